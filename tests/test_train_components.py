"""Pieces of the loop on their own: LR schedule, AdamW groups, FLOPs/MFU, JSONL log, Hub retries, signals."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from nanogpt2.training import HubPusher, build_optimizer, build_scheduler, count_params, flops_per_token, load_config
from nanogpt2.training.metrics_log import JsonlLog, read_jsonl
from nanogpt2.training.mfu import device_peak_flops


def test_lr_schedule_warmup_peak_cosine_to_ten_percent() -> None:
    cfg = load_config().train  # 6e-4 peak, 715 warmup, 19,073 steps, min 10%
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2, 2))], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg)
    for _ in range(3):  # the scheduler itself, stepped: the LR of step s is lr * lambda(s)
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(6e-4 * 3 / 715)
    lrs = [cfg.lr * scheduler.lr_lambdas[0](step) for step in range(cfg.max_steps + 1)]
    assert lrs[0] == 0.0
    assert lrs[357] == pytest.approx(6e-4 * 357 / 715)
    assert lrs[715] == pytest.approx(6e-4)
    midpoint = 715 + (19_073 - 715) // 2
    assert lrs[midpoint] == pytest.approx(6e-4 * (0.1 + 0.9 * 0.5), rel=1e-3)
    assert lrs[19_073] == pytest.approx(6e-5)
    assert all(a >= b for a, b in zip(lrs[715:], lrs[716:], strict=False))


def test_weight_decay_only_on_matrices_and_embeddings() -> None:
    from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel

    model = NanoGPT2LMHeadModel(NanoGPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    optimizer = build_optimizer(model, load_config().train, torch.device("cpu"))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert any("wte" in n for n in decayed) and any("wpe" in n for n in decayed)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == model.num_parameters()
    assert optimizer.defaults["betas"] == (0.9, 0.95) and optimizer.defaults["eps"] == 1e-8


def test_parameter_count_and_flops_per_token_of_gpt2_small() -> None:
    from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel

    cfg = load_config().model
    with torch.device("meta"):
        model = NanoGPT2LMHeadModel(NanoGPT2Config(vocab_size=50304, n_positions=1024))
    assert count_params(cfg) == model.num_parameters() == 124_475_904
    n_matmul = 124_475_904 - 1024 * 768
    assert flops_per_token(cfg) == 6 * n_matmul + 12 * 12 * 768 * 1024
    assert device_peak_flops(torch.device("cpu"), "bf16") is None  # unknown peak: MFU is omitted


def test_jsonl_log_truncates_after_the_resumed_step_and_drops_torn_lines(tmp_path: Path) -> None:
    log = JsonlLog(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        log.write({"step": step, "loss": float(step)})
    log.write({"step": 2, "val_loss": float("nan")})
    with log.path.open("a") as f:
        f.write('{"step": 4, "lo')  # a kill mid-write
    assert log.truncate_after(2) == 3
    assert read_jsonl(log.path) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}, {"step": 2, "val_loss": None}]


class FlakyApi:
    """Stands in for huggingface_hub.HfApi: the first `failures` uploads raise."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.uploads: list[tuple[str, str]] = []
        self.repos: list[tuple[str, bool]] = []

    def create_repo(self, repo_id: str, *, private: bool, exist_ok: bool, repo_type: str) -> None:
        self.repos.append((repo_id, private))

    def upload_folder(self, *, repo_id: str, folder_path: str, path_in_repo: str, **kwargs) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("503 from the Hub (token hf_abcdefghijklmnopqrstuvwx)")
        self.uploads.append((folder_path, path_in_repo))


def test_hub_push_failure_is_logged_without_token_and_retried(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "final").mkdir()
    messages: list[str] = []
    api = FlakyApi(failures=1)
    pusher = HubPusher("user/model", api=api, log=messages.append)
    pusher.push(tmp_path / "ckpt", "checkpoints/step_0000010")
    pusher._executor.submit(lambda: None).result()  # let the first upload finish (and fail)
    assert len(pusher.failed) == 1 and not api.uploads
    failure = next(m for m in messages if "failed" in m)
    assert "ConnectionError" in failure and "hf_abcdefghijklmnopqrstuvwx" not in failure and "hf_***" in failure
    pusher.push(tmp_path / "final", "")  # the next opportunity retries the failed one first
    assert pusher.close()
    assert api.uploads == [(str(tmp_path / "ckpt"), "checkpoints/step_0000010"), (str(tmp_path / "final"), "")]
    assert api.repos == [("user/model", True)]


def test_hub_push_gives_up_after_retries_without_raising(tmp_path: Path) -> None:
    (tmp_path / "final").mkdir()
    messages: list[str] = []
    pusher = HubPusher("user/model", api=FlakyApi(failures=10), log=messages.append)
    pusher.push(tmp_path / "final")
    assert pusher.close(retries=2) is False
    assert sum("failed" in m for m in messages) == 3 and "gave up" in messages[-1]


def test_stop_request_records_sigterm_instead_of_dying() -> None:
    from nanogpt2.training.signals import StopRequest

    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is not stop._handle


def test_push_to_hub_script_picks_final_or_checkpoint_weights(tmp_path: Path) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "push_to_hub.py"
    spec = importlib.util.spec_from_file_location("push_to_hub", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")
    ckpt = run / "checkpoints" / "step_0000020"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"")
    assert module.upload_plan(run)[:2] == (run / "final", "")
    folder, path_in_repo, _, allow = module.upload_plan(ckpt)
    assert (folder, path_in_repo, allow) == (ckpt, "checkpoints/step_0000020", ["model.safetensors", "config.yaml"])
    with pytest.raises(SystemExit, match="neither a run"):
        module.upload_plan(tmp_path)


def test_throughput_summary_is_the_median_after_warmup(tmp_path: Path) -> None:
    from nanogpt2.training.throughput import summarize_throughput

    log = JsonlLog(tmp_path / "metrics.jsonl")
    for step, (tps, mfu) in enumerate([(10.0, 0.1), (100.0, 0.4), (300.0, 0.5), (200.0, 0.45)], start=1):
        log.write({"step": step, "loss": 1.0, "tokens_per_s": tps, "step_time_s": 1 / tps, "mfu": mfu})
    log.write({"step": 4, "val_loss": 1.0})
    summary = summarize_throughput(tmp_path, skip=1)
    assert (summary["steps"], summary["tokens_per_s"], summary["mfu"]) == (3, 200.0, 0.45)
    with pytest.raises(ValueError, match="no training steps after step 4"):
        summarize_throughput(tmp_path, skip=4)


def test_model_card_reports_results_and_how_to_load():
    from nanogpt2.training.config import RunConfig
    from nanogpt2.training.model_card import render_model_card

    meta = {"sources": ["fineweb-edu"], "subset": "sample-10BT", "splits": {"train": {"tokens": 1000}}}
    scored = render_model_card(RunConfig(), steps=10, tokens=5000, meta=meta, precision="bf16",
                               final_eval={"val_loss": 3.5, "hellaswag_acc_norm": 0.2875, "hellaswag_acc": 0.28,
                                           "hellaswag_n": 10042})
    assert "| HellaSwag acc_norm (10042 examples) | 0.2875 |" in scored and "0.2955" in scored and "3.5000" in scored
    assert 'AutoTokenizer.from_pretrained("path/to/final", trust_remote_code=True)' in scored
    skipped = render_model_card(RunConfig(), steps=10, tokens=5000, meta=meta, precision="bf16",
                                final_eval={"val_loss": 3.5}, repo_id="you/model")
    assert "| HellaSwag acc_norm | not evaluated |" in skipped and '"you/model"' in skipped
