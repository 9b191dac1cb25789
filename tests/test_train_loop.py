"""The pretraining loop in-process on a tiny model: run folder, resume exactness, wandb, faults, errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from _train_helpers import (
    cached_run,
    cached_tiny_data,
    reset_accelerate,
    tiny_config,
    train_tiny_tokenizer,
    training_losses,
)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_tiny_data(tmp_path_factory)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Each run builds its own Accelerator; accelerate keeps process-wide singletons between them.
    One thread: the runs are tiny, and the test machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    reset_accelerate()
    yield
    reset_accelerate()
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def reference_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 uninterrupted steps, checkpoints at 4 and 8 (both kept)."""
    return cached_run("reference", tmp_path_factory, "checkpoint.keep_last=2")


def test_run_folder_has_metrics_checkpoints_final_model(reference_run: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nanogpt2.training import config_from_dict
    from nanogpt2.training.metrics_log import read_jsonl

    records = read_jsonl(reference_run / "metrics.jsonl")
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 9))
    for key in ("tokens", "loss", "lr", "grad_norm", "tokens_per_s", "step_time_s"):
        assert all(isinstance(r[key], float | int) for r in steps), key
    assert "mfu" not in steps[0]  # CPU: no known peak, so no made-up MFU
    assert steps[-1]["tokens"] == 8 * 256
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.3  # it learns
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [4, 8] and all(math.isfinite(r["val_loss"]) for r in evals)
    samples = read_jsonl(reference_run / "samples.jsonl")
    assert [s["step"] for s in samples] == [4, 4, 8, 8]
    assert all(s["text"].startswith("Hello, I'm a language model,") for s in samples)

    assert [p.name for p in sorted((reference_run / "checkpoints").iterdir())] == ["step_0000004", "step_0000008"]
    import yaml

    saved = config_from_dict(yaml.safe_load((reference_run / "config.yaml").read_text()))
    assert saved.train.max_steps == 8 and saved.model.n_embd == 32

    final = reference_run / "final"
    assert (final / "model.safetensors").is_file() and (final / "generation_config.json").is_file()
    card = (final / "README.md").read_text()
    assert f"{evals[-1]['val_loss']:.4f}" in card and "0.2955" in card and "trust_remote_code=True" in card
    model = AutoModelForCausalLM.from_pretrained(final, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(final)
    ids = tokenizer("The cat sees", return_tensors="pt").input_ids
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                         pad_token_id=tokenizer.eos_token_id)
    assert out.shape == (1, ids.shape[1] + 5)
    assert int(out.max()) < len(tokenizer)  # padded embedding rows are never generated


def test_resume_continues_bitwise_identically(reference_run: Path, tmp_path: Path, tiny_data: Path) -> None:
    """A run restarted from the step-4 checkpoint logs the same losses for steps 5-8, to the bit."""
    from nanogpt2.training import train

    out = tmp_path / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(reference_run / "checkpoints" / "step_0000004", out / "checkpoints" / "step_0000004")
    shutil.copy(reference_run / "metrics.jsonl", out / "metrics.jsonl")  # holds steps 5-8 that get redone
    result = train(tiny_config(tiny_data, out))
    assert result.step == 8 and result.stopped_by is None
    assert training_losses(out) == training_losses(reference_run)
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "val_loss" in line]
    assert [e["step"] for e in evals] == [4, 8]


def test_resume_from_an_explicit_checkpoint_path(reference_run: Path, tmp_path: Path, tiny_data: Path) -> None:
    from nanogpt2.training import train

    out = tmp_path / "explicit"
    result = train(tiny_config(tiny_data, out, "train.max_steps=8",
                               f"resume={reference_run / 'checkpoints' / 'step_0000008'}", "eval.num_samples=0"))
    assert result.step == 8 and not training_losses(out)  # nothing left to train, final model written
    assert (out / "final" / "model.safetensors").is_file()
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        train(tiny_config(tiny_data, tmp_path / "bad", f"resume={tmp_path}"))


def test_wandb_offline_run_is_continued_on_resume(tmp_path: Path, tiny_data: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from nanogpt2.training import train

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "wandb_run"
    extra = ("logging.tracker=wandb", "train.max_steps=4", "checkpoint.every=2", "eval.every=2",
             "logging.project=nanogpt2-tests")
    train(tiny_config(tiny_data, out, *extra))
    shutil.rmtree(out / "checkpoints" / "step_0000004")
    reset_accelerate()
    train(tiny_config(tiny_data, out, *extra))
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    run_ids = {p.name.rsplit("-", 1)[1] for p in runs}
    assert len(run_ids) == 1, f"the resumed run started a new wandb run: {runs}"
    state = torch.load(out / "checkpoints" / "step_0000004" / "custom_checkpoint_0.pkl", weights_only=False)
    assert state["tracker_run_id"] in run_ids
    assert sorted(training_losses(out)) == [1, 2, 3, 4]


def test_non_finite_loss_stops_with_the_step_and_no_checkpoint(tmp_path: Path, tiny_data: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from nanogpt2.training import NonFiniteLossError, loop, train

    real_build = loop.build_model

    def build_poisoned(*args, **kwargs):
        model = real_build(*args, **kwargs)
        calls = {"n": 0}

        def poison(module, inputs, output):  # step 3's first micro-batch (2 micro-batches per step)
            calls["n"] += 1
            if module.training and calls["n"] == 5:
                output.loss = output.loss * float("nan")
            return output

        model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(loop, "build_model", build_poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        train(tiny_config(tiny_data, out, "checkpoint.every=2", "eval.every=100"))
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_0000002"]
    assert sorted(training_losses(out)) == [1, 2]


def test_tokenizer_other_than_the_datas_is_an_error(tmp_path: Path, tiny_data: Path) -> None:
    from _train_helpers import generated_documents

    from nanogpt2.training import train

    other = train_tiny_tokenizer(generated_documents(50, seed=1), tmp_path / "other_tokenizer", vocab_size=280)
    with pytest.raises(ValueError, match="is not the tokenizer the data"):
        train(tiny_config(tiny_data, tmp_path / "run", f"data.tokenizer={other}"))
    # The data's own tokenizer given explicitly is accepted.
    result = train(tiny_config(tiny_data, tmp_path / "run2", f"data.tokenizer={tiny_data / 'tokenizer'}",
                               "train.max_steps=1", "eval.num_samples=0"))
    assert result.step == 1


def test_batch_that_does_not_divide_is_an_error(tmp_path: Path, tiny_data: Path) -> None:
    from nanogpt2.training import ConfigError, train

    with pytest.raises(ConfigError, match="train.total_batch_tokens: 300 is not a multiple of"):
        train(tiny_config(tiny_data, tmp_path / "run", "train.total_batch_tokens=300"))


def test_hellaswag_is_scored_at_each_evaluation(tmp_path: Path, tiny_data: Path, hellaswag_val_path: Path) -> None:
    from nanogpt2.training import train
    from nanogpt2.training.metrics_log import read_jsonl

    out = tmp_path / "hellaswag"
    # A context of 512: HellaSwag examples are long in the tiny tokenizer's small vocabulary.
    train(tiny_config(tiny_data, out, "model.seq_len=512", "train.micro_batch_size=1", "train.total_batch_tokens=512",
                      "eval.val_tokens=512", "train.max_steps=2", "eval.every=1", "eval.hellaswag=true",
                      f"eval.hellaswag_path={hellaswag_val_path}", "eval.hellaswag_limit=6", "eval.num_samples=0"))
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if "val_loss" in r]
    assert [r["step"] for r in evals] == [1, 2]
    for record in evals:
        assert record["hellaswag_n"] == 6
        for key in ("hellaswag_acc", "hellaswag_acc_norm", "hellaswag_acc_norm_chars"):
            assert record[key] in {i / 6 for i in range(7)}
    assert "HellaSwag acc_norm (6 examples)" in (out / "final" / "README.md").read_text()


def test_unloadable_hellaswag_is_reported_once_and_training_goes_on(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    from nanogpt2.training import train
    from nanogpt2.training.metrics_log import read_jsonl

    out = tmp_path / "no_hellaswag"
    missing = tmp_path / "missing.jsonl"
    result = train(tiny_config(tiny_data, out, "train.max_steps=2", "eval.every=1", "eval.hellaswag=true",
                               f"eval.hellaswag_path={missing}", "eval.num_samples=0"))
    assert result.step == 2
    said = capsys.readouterr().out
    assert said.count("HellaSwag disabled for this run") == 1 and str(missing) in said
    assert not any("hellaswag_acc" in r for r in read_jsonl(out / "metrics.jsonl"))


def test_resume_none_refuses_a_folder_with_checkpoints_and_rollback_drops_later_ones(
    reference_run: Path, tmp_path: Path, tiny_data: Path
) -> None:
    from nanogpt2.training import ConfigError, train

    out = tmp_path / "rollback"
    shutil.copytree(reference_run / "checkpoints", out / "checkpoints")
    shutil.copy(reference_run / "metrics.jsonl", out / "metrics.jsonl")
    with pytest.raises(ConfigError, match="resume: 'none' would start over"):
        train(tiny_config(tiny_data, out, "resume=none"))
    reset_accelerate()
    result = train(tiny_config(tiny_data, out, f"resume={out / 'checkpoints' / 'step_0000004'}",
                               "train.max_steps=6", "checkpoint.every=100", "eval.num_samples=0"))
    assert result.step == 6
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step_0000004", "step_0000006"]
    assert sorted(training_losses(out)) == [1, 2, 3, 4, 5, 6]


def test_hub_push_of_checkpoints_and_final_model_survives_a_failure(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    from nanogpt2.training import train

    class FailingOnceApi:
        uploads: list[str] = []

        def __init__(self) -> None:
            self.failed = False

        def create_repo(self, repo_id: str, **kwargs) -> None:
            pass

        def upload_folder(self, *, folder_path: str, path_in_repo: str, **kwargs) -> None:
            if not self.failed:
                self.failed = True
                raise OSError("Hub unavailable")
            FailingOnceApi.uploads.append(path_in_repo)

    monkeypatch.setattr(huggingface_hub, "HfApi", FailingOnceApi)
    out = tmp_path / "pushed"
    result = train(tiny_config(tiny_data, out, "train.max_steps=4", "checkpoint.every=2", "eval.every=4",
                               "eval.num_samples=0", "hub.push=true", "hub.repo_id=user/tiny",
                               "hub.push_checkpoints=true"))
    assert result.final_dir is not None
    # step 2's push failed, was retried with the next push, and training never noticed.
    assert sorted(FailingOnceApi.uploads) == ["", "checkpoints/step_0000002", "checkpoints/step_0000004"]
