"""FSDP2 through Accelerate, the way a user launches it: `accelerate launch --config_file
configs/accelerate/fsdp-8gpu.yaml --num_processes 2 scripts/pretrain.py ...` on gloo CPU processes.

Accelerate 1.15 alone would prepare DDP here; the loop honours the FSDP2 config on CPU (training/fsdp.py),
so Accelerate's own FSDP2 path runs: `fully_shard` per NanoGPT2Block, DCP sharded checkpoints,
`get_state_dict` gathering for final/. The sharded runs are compared with the same runs under DDP (or one
process): the losses, HellaSwag on a number of batches that does not divide among the processes, sampling,
the gathered final/ folder, a bitwise resume, Muon's sharded state, and `init_from` into a sharded SFT run.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from _hellaswag_helpers import make_examples, write_jsonl
from _train_helpers import (
    SCRIPTS,
    launch,
    pretrain_on_two_processes,
    tiny_cli_args,
    tiny_config,
    train_in_process,
    training_losses,
)
from conftest import REPO_ROOT
from safetensors.torch import load_file

from nanogpt2.evaluation.hellaswag import tokenize_requests
from nanogpt2.evaluation.hellaswag.packing import plan_batches
from nanogpt2.training.checkpointing import CheckpointError
from nanogpt2.utils import read_jsonl

FSDP_LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO_ROOT / "configs" / "accelerate" / "fsdp-8gpu.yaml"), "--num_processes", "2"]
HELLASWAG_EXAMPLES, HELLASWAG_BATCH = 5, 2
SEQ_LEN = 128  # the generated HellaSwag endings are up to ~70 tokens: one micro-step of 4 x 128 per process
MUON = ("train.optimizer=muon", "train.muon_lr=0.02")
BF16 = ("train.mixed_precision=bf16",)
SFT = ("train.max_steps=4", "eval.every=2", "checkpoint.every=2", "eval.max_new_tokens=12",
       "eval.chat_prompts=[What sees the cat?, What likes a dog?, What reads my friend?]")


def launch_fsdp(args: list[str], script: str = "pretrain") -> str:
    return launch(FSDP_LAUNCH, args, script=SCRIPTS[script])


@pytest.fixture(scope="module")
def hellaswag_file(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """Generated examples whose scoring batches do not divide between 2 processes."""
    examples = make_examples(HELLASWAG_EXAMPLES)
    requests = tokenize_requests(examples, tiny_tokenizer, style="nanogpt", max_length=SEQ_LEN)
    assert len(plan_batches(requests, HELLASWAG_BATCH, share_context=True)) % 2 == 1
    return write_jsonl(tmp_path_factory.mktemp("hellaswag") / "val.jsonl", examples)


@pytest.fixture(scope="module")
def pretrain_args(tiny_data: Path, hellaswag_file: Path) -> list[str]:
    return [f"model.seq_len={SEQ_LEN}", f"train.total_batch_tokens={2 * 4 * SEQ_LEN}", "eval.hellaswag=true",
            f"eval.hellaswag_path={hellaswag_file}", f"eval.hellaswag_batch_size={HELLASWAG_BATCH}",
            "checkpoint.keep_last=2"]


@pytest.fixture(scope="module")
def sharded_run(tiny_data: Path, pretrain_args: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("fsdp") / "run"
    return out, launch_fsdp(tiny_cli_args(tiny_data, out, *pretrain_args))


@pytest.fixture(scope="module")
def ddp_run(tiny_data: Path, pretrain_args: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    pretrain_on_two_processes(tiny_cli_args(tiny_data, out, *pretrain_args))
    return out


def evaluations(out: Path) -> list[dict]:
    return [r for r in read_jsonl(out / "metrics.jsonl") if "val_loss" in r]


def test_the_fsdp_config_shards_and_checkpoints_are_sharded(sharded_run: tuple) -> None:
    out, output = sharded_run
    assert "on each of 2 process(es) (FSDP, fsdp_version 2, SHARDED_STATE_DICT)" in output
    checkpoint = out / "checkpoints" / "step_0000004"
    for part in ("pytorch_model_fsdp_0", "optimizer_0"):  # torch.distributed.checkpoint folders
        assert any((checkpoint / part).glob("*.distcp")), part
    assert not (checkpoint / "model.safetensors").exists()


def test_sharded_run_equals_ddp(sharded_run: tuple, ddp_run: Path) -> None:
    out, _ = sharded_run
    sharded, replicated = training_losses(out), training_losses(ddp_run)
    assert list(sharded) == list(range(1, 9))
    assert list(sharded.values()) == pytest.approx(list(replicated.values()), abs=1e-5)
    got, expected = evaluations(out), evaluations(ddp_run)
    assert [r["step"] for r in got] == [4, 8]
    for g, e in zip(got, expected, strict=True):
        assert g["val_loss"] == pytest.approx(e["val_loss"], abs=1e-5)
        assert g["hellaswag_n"] == HELLASWAG_EXAMPLES  # each process scored, none waited for the other
        assert g["hellaswag_acc_norm"] == e["hellaswag_acc_norm"]
    assert [s["step"] for s in read_jsonl(out / "samples.jsonl")] == [4, 4, 8, 8]


def test_final_is_the_gathered_plain_model(sharded_run: tuple, ddp_run: Path) -> None:
    out, _ = sharded_run
    final, reference = out / "final", ddp_run / "final"
    # The Hub code is modeling_nanogpt2.py, not the class fully_shard generates in torch's FSDP module.
    assert sorted(p.name for p in final.iterdir()) == sorted(p.name for p in reference.iterdir())
    assert (final / "config.json").read_text() == (reference / "config.json").read_text()
    weights, expected = load_file(final / "model.safetensors"), load_file(reference / "model.safetensors")
    assert set(weights) == set(expected)  # the tied output layer stored once
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, expected[name], atol=1e-5, rtol=0, msg=name)


def test_sharded_checkpoint_resumes_bitwise(sharded_run: tuple, tiny_data: Path, pretrain_args: list[str],
                                            tmp_path: Path) -> None:
    out, _ = sharded_run
    resumed = tmp_path / "resumed"
    shutil.copytree(out / "checkpoints" / "step_0000004", resumed / "checkpoints" / "step_0000004")
    shutil.copy(out / "metrics.jsonl", resumed / "metrics.jsonl")
    output = launch_fsdp(tiny_cli_args(tiny_data, resumed, *pretrain_args))
    assert "resumed from" in output
    assert training_losses(resumed) == training_losses(out)
    assert evaluations(resumed) == evaluations(out)


def test_a_sharded_checkpoint_is_not_resumed_unsharded(sharded_run: tuple, tiny_data: Path, pretrain_args: list[str],
                                                       tmp_path: Path) -> None:
    out, _ = sharded_run
    elsewhere = tmp_path / "unsharded"
    shutil.copytree(out / "checkpoints" / "step_0000004", elsewhere / "checkpoints" / "step_0000004")
    with pytest.raises(CheckpointError, match=r"holds sharded \(FSDP\) model and optimizer state, and this run is NO"):
        train_in_process(tiny_config(tiny_data, elsewhere, *pretrain_args))


@pytest.fixture(scope="module")
def sharded_sft(reference_run: Path, tiny_chat_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """SFT with Muon from the tiny pretrained model, into a sharded run: `init_from` loads the folder on
    every process, then Accelerate shards it. In bf16, with activation checkpointing inside the sharded blocks."""
    out = tmp_path_factory.mktemp("fsdp_sft") / "run"
    args = tiny_cli_args(tiny_chat_data, out, f"init_from={reference_run / 'final'}", *SFT, *MUON, *BF16,
                         "train.gradient_checkpointing=true")
    return out, args, launch_fsdp(args, script="sft")


def test_init_from_into_a_sharded_sft_run(sharded_sft: tuple, reference_run: Path, tiny_chat_data: Path,
                                          tmp_path: Path) -> None:
    out, _, output = sharded_sft
    assert "(FSDP, fsdp_version 2" in output and "init_from:" in output
    single = tmp_path / "single"  # one process, bf16 autocast, without activation checkpointing
    train_in_process(tiny_config(tiny_chat_data, single, f"init_from={reference_run / 'final'}", *SFT, *MUON, *BF16))
    sharded, expected = training_losses(out), training_losses(single)
    # bf16 weights gathered by FSDP against bf16 autocast: the same roundings, other summation orders; and
    # Muon's Newton-Schulz in bf16 on DTensor shards (within bf16's error of the fp32 iteration).
    assert list(sharded.values()) == pytest.approx(list(expected.values()), abs=2e-3)
    # The loss keeps fp32 precision: Accelerate's bf16 policy would cast the model's outputs to bf16.
    assert all(torch.tensor(loss).bfloat16().item() != loss for loss in sharded.values())
    got = evaluations(out)
    assert [r["step"] for r in got] == [2, 4] and all(0.0 <= r["eot_rate"] <= 1.0 for r in got)
    samples = read_jsonl(out / "samples.jsonl")  # greedy chat replies on the sharded model
    assert len(samples) == 4 and all("\nAssistant: " in s["text"] for s in samples)


def test_muon_state_is_sharded_and_resumes_bitwise(sharded_sft: tuple, tmp_path: Path) -> None:
    out, args, _ = sharded_sft
    resumed = tmp_path / "resumed"
    shutil.copytree(out / "checkpoints" / "step_0000002", resumed / "checkpoints" / "step_0000002")
    shutil.copy(out / "metrics.jsonl", resumed / "metrics.jsonl")
    launch_fsdp([*args, f"out_dir={resumed}"], script="sft")
    assert training_losses(resumed) == training_losses(out)


def test_a_requested_fsdp_that_was_not_applied_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from nanogpt2.training.fsdp import cpu_fsdp_plugin, describe_wrapping

    ddp = SimpleNamespace(distributed_type=DistributedType.MULTI_GPU)
    assert describe_wrapping(ddp) == "MULTI_GPU"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert describe_wrapping(ddp) == ("MULTI_GPU; warning: FSDP was requested but Accelerate prepared MULTI_GPU, "
                                      "nothing is sharded")
    assert cpu_fsdp_plugin(on_cpu=True) is None  # one process: nothing to shard over
    assert cpu_fsdp_plugin(on_cpu=False) is None  # GPUs: Accelerate applies the config itself
