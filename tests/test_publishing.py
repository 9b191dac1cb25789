"""Publishing: the model card from plain values, background Hub uploads with retries (a fake API, no
network), and the `push` verb."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants

from nanogpt2.cli import main
from nanogpt2.cli.push import upload_plan
from nanogpt2.publishing import HubPublisher, render_model_card
from nanogpt2.publishing import hub as hub_module
from nanogpt2.reporting import GPT2_124M_HELLASWAG
from nanogpt2.training import RunConfig
from nanogpt2.utils import InputError

TOKEN = "hf_abcdefghijklmnopqrstuvwx"


class FlakyApi(HfApi):
    """HfApi with its own background queue (`run_as_future`) but no network: fails the first uploads."""

    def __init__(self, failures: int = 0, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.failures, self.gate = failures, gate
        self.repos: list[tuple[str, bool]] = []
        self.uploads: list[tuple[str, str, list[str] | None]] = []
        self.threads: set[threading.Thread] = set()

    def create_repo(self, repo_id: str, *, private: bool, exist_ok: bool, repo_type: str) -> None:
        self.repos.append((repo_id, private))

    def upload_folder(self, *, repo_id: str, folder_path: str, path_in_repo: str, allow_patterns=None, **kwargs):
        self.threads.add(threading.current_thread())
        if self.gate is not None:
            self.gate.wait(10)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError(f"503 from the Hub (token {TOKEN})")
        self.uploads.append((folder_path, path_in_repo, allow_patterns))


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run with HF_HUB_OFFLINE=1; the fake API needs the publisher to believe it is online."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def folders(root: Path, *names: str) -> list[Path]:
    for name in names:
        (root / name).mkdir(parents=True)
    return [root / name for name in names]


def test_push_returns_at_once_and_uploads_in_the_background(tmp_path: Path, online) -> None:
    (final,) = folders(tmp_path, "final")
    gate = threading.Event()
    api = FlakyApi(gate=gate)
    publisher = HubPublisher("user/model", api=api, log=lambda message: None)
    publisher.push(final, allow_patterns=["*.safetensors"])  # the upload is held by the gate: push did not wait
    assert api.uploads == [] and publisher.pushed == []
    gate.set()
    assert publisher.close()
    assert api.uploads == [(str(final), "", ["*.safetensors"])] and api.repos == [("user/model", True)]
    assert [upload.folder for upload in publisher.pushed] == [final] and threading.current_thread() not in api.threads


def test_failure_is_logged_without_token_and_retried_at_the_next_push(tmp_path: Path, online) -> None:
    ckpt, final = folders(tmp_path, "ckpt", "final")
    messages: list[str] = []
    api = FlakyApi(failures=1)
    publisher = HubPublisher("user/model", api=api, log=messages.append)
    publisher.push(ckpt, "checkpoints/step_0000010")
    api.run_as_future(lambda: None).result()  # the queue runs in order: the first upload has finished (failed)
    assert [upload.folder for upload in publisher.failed] == [ckpt] and not api.uploads
    (failure,) = messages
    assert "ConnectionError" in failure and TOKEN not in failure and str(ckpt) in failure
    publisher.push(final, "")  # the next opportunity retries the failed one first
    assert publisher.close()
    assert [(folder, path) for folder, path, _ in api.uploads] == [(str(ckpt), "checkpoints/step_0000010"),
                                                                   (str(final), "")]
    assert api.repos == [("user/model", True)] and publisher.failed == []


def test_close_gives_up_after_its_retries_without_raising(tmp_path: Path, online) -> None:
    (final,) = folders(tmp_path, "final")
    messages: list[str] = []
    publisher = HubPublisher("user/model", private=False, api=FlakyApi(failures=10), log=messages.append)
    publisher.push(final)
    assert publisher.close(retries=2) is False
    assert len(messages) == 4 and all(TOKEN not in m for m in messages)  # 3 attempts, then one line giving up
    assert [upload.folder for upload in publisher.failed] == [final] and str(final) in messages[-1]


def test_a_failed_folder_that_disappeared_is_not_retried(tmp_path: Path, online) -> None:
    ckpt, final = folders(tmp_path, "ckpt", "final")
    api = FlakyApi(failures=1)
    publisher = HubPublisher("user/model", api=api, log=lambda message: None)
    publisher.push(ckpt)
    api.run_as_future(lambda: None).result()
    ckpt.rmdir()  # rotated away before the retry
    publisher.push(final)
    assert publisher.close()
    assert [folder for folder, _, _ in api.uploads] == [str(final)]


def test_offline_nothing_is_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    (final,) = folders(tmp_path, "final")
    api = FlakyApi()
    publisher = HubPublisher("user/model", api=api, log=lambda message: None)
    publisher.push(final)
    assert publisher.close(retries=3) is False
    assert api.repos == [] and api.uploads == [] and [u.folder for u in publisher.failed] == [final]


RUN_CONFIG = {
    "out_dir": "runs/x", "seed": 1337,
    "model": {"n_layer": 12, "n_head": 12, "n_embd": 768, "seq_len": 1024, "vocab_size": 50304, "dropout": 0.0},
    "data": {"path": "prepared/fineweb-edu-10B"},
    "train": {"micro_batch_size": 64, "total_batch_tokens": 524288, "max_steps": 19073, "lr": 6e-4,
              "min_lr_ratio": 0.1, "warmup_steps": 715, "weight_decay": 0.1, "betas": [0.9, 0.95], "eps": 1e-8,
              "grad_clip": 1.0},
}


def test_model_card_reports_results_and_how_to_load() -> None:
    meta = {"sources": ["fineweb-edu"], "subset": "sample-10BT", "splits": {"train": {"tokens": 1000}}}
    scored = render_model_card(RUN_CONFIG, n_params=124_475_904, steps=10, tokens=5000, meta=meta, precision="bf16",
                               final_eval={"val_loss": 3.5, "hellaswag_acc_norm": 0.2875, "hellaswag_acc": 0.28,
                                           "hellaswag_n": 10042})
    assert "| HellaSwag acc_norm (10042 examples) | 0.2875 |" in scored and str(GPT2_124M_HELLASWAG) in scored
    assert "| validation loss | 3.5000 |" in scored and "| parameters (tied embedding counted once) | 124,475,904 |" \
        in scored
    assert "| layers / heads / width | 12 / 12 / 768 |" in scored and "fineweb-edu (sample-10BT), 1,000" in scored
    assert 'AutoTokenizer.from_pretrained("path/to/final", trust_remote_code=True)' in scored
    skipped = render_model_card(RUN_CONFIG, n_params=1, steps=10, tokens=5000, meta={}, precision="bf16",
                                final_eval={"val_loss": 3.5}, repo_id="you/model")
    assert "| HellaSwag acc_norm | not evaluated |" in skipped and '"you/model"' in skipped
    assert "prepared/fineweb-edu-10B" in skipped  # no meta.json sources: the data path stands in
    config = RunConfig().to_dict()  # the dict the trainer passes has every key the card reads
    assert f"| context length | {config['model']['seq_len']} |" in render_model_card(
        config, n_params=1, steps=1, tokens=1, meta={}, final_eval={}, precision="no")


def run_folder(root: Path) -> tuple[Path, Path]:
    run = root / "run"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")
    ckpt = run / "checkpoints" / "step_0000020"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"")
    return run, ckpt


def test_upload_plan_picks_final_or_checkpoint_weights(tmp_path: Path) -> None:
    run, ckpt = run_folder(tmp_path)
    assert upload_plan(run)[:2] == (run / "final", "") == upload_plan(run / "final")[:2]
    folder, path_in_repo, _, allow = upload_plan(ckpt)
    assert (folder, path_in_repo, allow) == (ckpt, "checkpoints/step_0000020", ["model.safetensors", "config.yaml"])
    with pytest.raises(InputError, match=str(tmp_path)):
        upload_plan(tmp_path)


def test_push_verb_uploads_the_final_model(tmp_path: Path, online, monkeypatch: pytest.MonkeyPatch) -> None:
    run, _ = run_folder(tmp_path)
    apis: list[FlakyApi] = []
    monkeypatch.setattr(hub_module, "HfApi", lambda: apis.append(FlakyApi(failures=1)) or apis[-1])
    assert main(["push", str(run), "--repo-id", "you/model", "--public", "--retries", "1"]) == 0
    assert apis[0].uploads == [(str(run / "final"), "", None)] and apis[0].repos == [("you/model", False)]
    monkeypatch.setattr(hub_module, "HfApi", lambda: FlakyApi(failures=3))
    assert main(["push", str(run), "--repo-id", "you/model", "--retries", "1"]) == 1  # still failing: status 1


def test_push_verb_names_a_folder_it_cannot_push_and_refuses_offline(tmp_path: Path, capsys) -> None:
    assert main(["push", str(tmp_path), "--repo-id", "you/model"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "Traceback" not in err
    run, _ = run_folder(tmp_path)
    assert constants.HF_HUB_OFFLINE  # as the tests run
    assert main(["push", str(run), "--repo-id", "you/model"]) == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and "you/model" in err and "Traceback" not in err
