"""The pretraining loop in-process on a tiny model: run folder, resume exactness, wandb, faults, errors."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from _train_helpers import tiny_cli_args, tiny_config, train_in_process, training_losses
from conftest import generated_documents
from transformers import AutoModelForCausalLM, AutoTokenizer

from nanogpt2.cli import main as nanogpt2
from nanogpt2.data import TokenLoader, train_byte_level_bpe
from nanogpt2.publishing import hub
from nanogpt2.training import CheckpointError, ConfigError, NonFiniteLossError, config_from_dict, trainer
from nanogpt2.utils import read_jsonl


def test_run_folder_has_metrics_checkpoints_final_model(reference_run: Path) -> None:
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
    out = tmp_path / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(reference_run / "checkpoints" / "step_0000004", out / "checkpoints" / "step_0000004")
    shutil.copy(reference_run / "metrics.jsonl", out / "metrics.jsonl")  # holds steps 5-8 that get redone
    result = train_in_process(tiny_config(tiny_data, out))
    assert result.step == 8 and result.stopped_by is None
    assert training_losses(out) == training_losses(reference_run)
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "val_loss" in line]
    assert [e["step"] for e in evals] == [4, 8]


def test_resume_from_an_explicit_checkpoint_path(reference_run: Path, tmp_path: Path, tiny_data: Path) -> None:
    out = tmp_path / "explicit"
    result = train_in_process(tiny_config(tiny_data, out, "train.max_steps=8",
                               f"resume={reference_run / 'checkpoints' / 'step_0000008'}", "eval.num_samples=0"))
    assert result.step == 8 and not training_losses(out)  # nothing left to train, final model written
    assert (out / "final" / "model.safetensors").is_file()
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        train_in_process(tiny_config(tiny_data, tmp_path / "bad", f"resume={tmp_path / 'missing'}"))


def test_wandb_offline_run_is_continued_on_resume(tmp_path: Path, tiny_data: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "wandb_run"
    extra = ("logging.tracker=wandb", "train.max_steps=4", "checkpoint.every=2", "eval.every=2",
             "logging.project=nanogpt2-tests")
    train_in_process(tiny_config(tiny_data, out, *extra))
    shutil.rmtree(out / "checkpoints" / "step_0000004")
    train_in_process(tiny_config(tiny_data, out, *extra))
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    run_ids = {p.name.rsplit("-", 1)[1] for p in runs}
    assert len(run_ids) == 1, f"the resumed run started a new wandb run: {runs}"
    state = torch.load(out / "checkpoints" / "step_0000004" / "custom_checkpoint_0.pkl", weights_only=False)
    assert state["tracker_run_id"] in run_ids
    assert sorted(training_losses(out)) == [1, 2, 3, 4]


def test_non_finite_loss_stops_with_the_step_and_no_checkpoint(tmp_path: Path, tiny_data: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = trainer.build_model

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

    monkeypatch.setattr(trainer, "build_model", build_poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        train_in_process(tiny_config(tiny_data, out, "checkpoint.every=2", "eval.every=100"))
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_0000002"]
    assert sorted(training_losses(out)) == [1, 2]


def test_tokenizer_other_than_the_datas_is_an_error(tmp_path: Path, tiny_data: Path) -> None:
    other = tmp_path / "other_tokenizer"
    train_byte_level_bpe(generated_documents(50, seed=1), 280, other)
    with pytest.raises(ConfigError, match="data.tokenizer: .* is not the tokenizer the data"):
        train_in_process(tiny_config(tiny_data, tmp_path / "run", f"data.tokenizer={other}"))
    # The data's own tokenizer given explicitly is accepted.
    result = train_in_process(tiny_config(tiny_data, tmp_path / "run2", f"data.tokenizer={tiny_data / 'tokenizer'}",
                               "train.max_steps=1", "eval.num_samples=0"))
    assert result.step == 1


def test_batch_that_does_not_divide_is_an_error(tmp_path: Path, tiny_data: Path) -> None:
    with pytest.raises(ConfigError, match="train.total_batch_tokens: 300 is not a multiple of"):
        train_in_process(tiny_config(tiny_data, tmp_path / "run", "train.total_batch_tokens=300"))


def test_hellaswag_is_scored_at_each_evaluation(tmp_path: Path, tiny_data: Path, hellaswag_val_path: Path) -> None:
    out = tmp_path / "hellaswag"
    # A context of 512: HellaSwag examples are long in the tiny tokenizer's small vocabulary.
    train_in_process(tiny_config(tiny_data, out, "model.seq_len=512", "train.micro_batch_size=1",
                                 "train.total_batch_tokens=512", "eval.val_tokens=512", "train.max_steps=2",
                                 "eval.every=1", "eval.hellaswag=true", f"eval.hellaswag_path={hellaswag_val_path}",
                                 "eval.hellaswag_limit=6", "eval.num_samples=0"))
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
    out = tmp_path / "no_hellaswag"
    missing = tmp_path / "missing.jsonl"
    result = train_in_process(tiny_config(tiny_data, out, "train.max_steps=2", "eval.every=1", "eval.hellaswag=true",
                               f"eval.hellaswag_path={missing}", "eval.num_samples=0"))
    assert result.step == 2
    said = capsys.readouterr().out
    assert said.count("HellaSwag disabled for this run") == 1 and str(missing) in said
    assert not any("hellaswag_acc" in r for r in read_jsonl(out / "metrics.jsonl"))


def test_resume_none_refuses_a_folder_with_checkpoints_and_rollback_drops_later_ones(
    reference_run: Path, tmp_path: Path, tiny_data: Path
) -> None:
    out = tmp_path / "rollback"
    shutil.copytree(reference_run / "checkpoints", out / "checkpoints")
    shutil.copy(reference_run / "metrics.jsonl", out / "metrics.jsonl")
    with pytest.raises(ConfigError, match="resume: 'none' would start over"):
        train_in_process(tiny_config(tiny_data, out, "resume=none"))
    result = train_in_process(tiny_config(tiny_data, out, f"resume={out / 'checkpoints' / 'step_0000004'}",
                               "train.max_steps=6", "checkpoint.every=100", "eval.num_samples=0"))
    assert result.step == 6
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step_0000004", "step_0000006"]
    assert sorted(training_losses(out)) == [1, 2, 3, 4, 5, 6]


def test_hub_push_of_checkpoints_and_final_model_survives_a_failure(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_publishing import FlakyApi

    api = FlakyApi(failures=1)
    monkeypatch.setattr(hub, "HfApi", lambda: api)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    out = tmp_path / "pushed"
    result = train_in_process(tiny_config(tiny_data, out, "train.max_steps=4", "checkpoint.every=2", "eval.every=4",
                                          "eval.num_samples=0", "hub.push=true", "hub.repo_id=user/tiny",
                                          "hub.push_checkpoints=true"))
    assert result.final_dir is not None
    # step 2's push failed, was retried with the next push, and training never noticed.
    assert sorted(path_in_repo for _, path_in_repo, _ in api.uploads) == [
        "", "checkpoints/step_0000002", "checkpoints/step_0000004"]
    assert api.repos == [("user/tiny", True)]


def _damage(checkpoint: Path, how: str) -> None:
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if how == "truncated":  # a partial copy: the file ends early
        del data[len(data) // 2:]
    else:  # bit rot: one bit flipped inside the tensor data, the size unchanged
        data[-100] ^= 0x10
    weights.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "bit-flipped"])
def test_damaged_newest_checkpoint_is_set_aside_and_the_run_continues_exactly(
    reference_run: Path, tmp_path: Path, tiny_data: Path, how: str, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "damaged"
    shutil.copytree(reference_run / "checkpoints", out / "checkpoints")
    shutil.copy(reference_run / "metrics.jsonl", out / "metrics.jsonl")
    _damage(out / "checkpoints" / "step_0000008", how)

    result = train_in_process(tiny_config(tiny_data, out))  # resume=auto

    assert result.step == 8 and result.final_dir is not None
    said = capsys.readouterr().out
    assert "step_0000008" in said and "damaged" in said
    assert (out / "checkpoints" / "step_0000008.damaged" / "model.safetensors").is_file()  # kept, not deleted
    assert training_losses(out) == training_losses(reference_run)  # steps 5-8 again, to the bit
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_0000004", "step_0000008", "step_0000008.damaged"]


def test_resume_path_to_a_damaged_checkpoint_is_a_clear_error(
    reference_run: Path, tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    damaged = tmp_path / "step_0000004"
    shutil.copytree(reference_run / "checkpoints" / "step_0000004", damaged)
    _damage(damaged, "bit-flipped")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        train_in_process(tiny_config(tiny_data, tmp_path / "run", f"resume={damaged}"))
    # Through the command: one line naming the checkpoint, exit status 2, no traceback.
    code = nanogpt2(["pretrain", *tiny_cli_args(tiny_data, tmp_path / "run2", f"resume={damaged}")])
    err = capsys.readouterr().err
    assert code == 2 and str(damaged) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_data_path_is_one_line_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "no_such_data"
    code = nanogpt2(["pretrain", *tiny_cli_args(missing, tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "data.path" in err and str(missing) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_init_from_starts_from_the_saved_weights_and_takes_their_shape(
    reference_run: Path, tmp_path: Path, tiny_data: Path
) -> None:
    """Continued pretraining: step 1's loss is the saved model's loss on the first batches, to float rounding."""
    source = AutoModelForCausalLM.from_pretrained(reference_run / "final", trust_remote_code=True)
    loader = TokenLoader(tiny_data, "train", batch_size=4, seq_len=32)
    with torch.no_grad():
        expected = sum(source(input_ids=x, shift_labels=y).loss.item() for x, y in itertools.islice(loader, 2)) / 2
    out = tmp_path / "continued"
    # model.* given here differ from the saved model's: init_from's architecture wins.
    result = train_in_process(tiny_config(tiny_data, out, f"init_from={reference_run / 'final'}", "model.n_layer=1",
                                          "model.n_embd=16", "train.max_steps=2", "eval.every=2", "eval.num_samples=0"))
    assert result.step == 2
    assert training_losses(out)[1] == pytest.approx(expected, abs=1e-5)
    saved = config_from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    assert (saved.model.n_layer, saved.model.n_embd, saved.init_from) == (2, 32, str(reference_run / "final"))
    with pytest.raises(ConfigError, match="init_from: cannot load"):
        train_in_process(tiny_config(tiny_data, tmp_path / "bad", f"init_from={tmp_path / 'no_model'}"))


def test_sft_verb_requires_init_from(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert nanogpt2(["sft", *tiny_cli_args(tiny_data, tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith("error: init_from:")
