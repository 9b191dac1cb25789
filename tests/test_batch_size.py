"""`train.micro_batch_size=auto`: candidates, halving on a simulated out-of-memory, agreement over processes,
the Trainer's use of the size found (logged, saved, bitwise the same run) and a resume keeping it."""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from _train_helpers import start_pretrain, subprocess_env, tiny_cli_args, tiny_config, train_in_process, training_losses

from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel
from nanogpt2.training import ConfigError, load_config
from nanogpt2.training import batch_size as auto_batch
from nanogpt2.training.batch_size import (
    find_micro_batch_size,
    largest_candidate,
    reserved_bytes,
    saved_micro_batch_size,
)


def simulated_oom(fits_up_to: int, tried: list[int]) -> Callable[..., None]:
    """A probe that runs out of memory above `fits_up_to` sequences, recording every size it is asked for."""
    def probe(*args: object) -> None:
        size = int(args[1]) if len(args) > 1 else int(args[0])  # probe_micro_batch(model, size, ...) or probe(size)
        tried.append(size)
        if size > fits_up_to:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {size} GiB")
    return probe


@pytest.mark.parametrize(("total", "seq_len", "world", "cap", "expected"), [
    (524_288, 1024, 1, None, 512),  # GPT-2 small on one GPU: 512 sequences, 1 micro-step
    (524_288, 1024, 8, None, 64),
    (524_288, 1024, 1, 8192, 8),  # the CPU cap: 8 x 1024 tokens
    (96 * 32, 32, 1, None, 32),  # 96 sequences: the largest power of two dividing them is 32
    (3 * 2048, 2048, 1, 1024, 1),  # a sequence longer than the cap still gets 1
])
def test_largest_candidate(total: int, seq_len: int, world: int, cap: int | None, expected: int) -> None:
    assert largest_candidate(total, seq_len, world, cap) == expected


def test_a_batch_of_partial_sequences_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"train.total_batch_tokens: 1000 is not a multiple .* 32 x 2 = 64"):
        largest_candidate(1000, 32, 2)


def test_the_probe_holds_back_what_the_optimizer_and_wrapper_add() -> None:
    n = 1_000_003
    assert reserved_bytes(n, 1, sharded=False) == 8 * n  # AdamW's two fp32 moments
    assert reserved_bytes(n, 8, sharded=False) == 12 * n  # and DDP's fp32 gradient buckets
    assert reserved_bytes(n, 8, sharded=True) == -(-8 * n // 8)  # FSDP: this process's shard of the moments


def test_halves_on_out_of_memory_until_it_fits() -> None:
    tried: list[int] = []
    said: list[str] = []
    assert find_micro_batch_size(64, simulated_oom(8, tried), said.append) == 8
    assert tried == [64, 32, 16, 8]
    assert len(said) == 3 and said[0].startswith("train.micro_batch_size=auto: 64 ")


def test_other_errors_are_not_taken_for_out_of_memory() -> None:
    def broken(size: int) -> None:
        raise ValueError("shape mismatch")
    with pytest.raises(ValueError, match="shape mismatch"):
        find_micro_batch_size(8, broken, print)


def test_nothing_fits_is_a_config_error_on_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_micro_batch_size(4, simulated_oom(0, []), lambda _: None) == 0
    monkeypatch.setattr(auto_batch, "probe_micro_batch", simulated_oom(64, []))
    with pytest.raises(ConfigError, match="train.micro_batch_size: auto found no size"):  # another process found none
        auto_batch.auto_micro_batch_size(tiny_model(), 2**14, 16, fake_accelerator(2, 0), print)


def tiny_model() -> NanoGPT2LMHeadModel:
    torch.manual_seed(0)
    return NanoGPT2LMHeadModel(NanoGPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                              resid_pdrop=0.1))  # dropout draws from the RNG the probe must keep


def fake_accelerator(num_processes: int, found_elsewhere: int | None = None) -> SimpleNamespace:
    """What `auto_micro_batch_size` uses of an Accelerator, on the CPU; `gather` adds another process's size."""
    def gather(found: torch.Tensor) -> torch.Tensor:
        return torch.cat([found, torch.tensor([found_elsewhere])])
    return SimpleNamespace(device=torch.device("cpu"), num_processes=num_processes, autocast=contextlib.nullcontext,
                           gather=gather, distributed_type="MULTI_CPU" if num_processes > 1 else "NO")


def test_cpu_takes_the_largest_candidate_under_the_cap_and_leaves_model_and_rng_as_they_were() -> None:
    model = tiny_model()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    # 2**20 tokens = 2**16 sequences of 16; the CPU cap allows 8192 / 16 = 512, and a real probe runs at 512.
    assert auto_batch.auto_micro_batch_size(model, 2**20, 16, fake_accelerator(1), print) == 512
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_processes_agree_on_the_smallest_size(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[int] = []
    monkeypatch.setattr(auto_batch, "probe_micro_batch", simulated_oom(64, tried))
    # 2 processes: 2**14 tokens / (16 x 2) = 512 sequences each; this one fits 64, the other only 16.
    found = auto_batch.auto_micro_batch_size(tiny_model(), 2**14, 16, fake_accelerator(2, 16), print)
    assert found == 16 and tried == [512, 256, 128, 64]


def test_config_accepts_auto_or_a_positive_number() -> None:
    assert load_config(None, ["train.micro_batch_size=auto"]).train.micro_batch_size == "auto"
    assert load_config(None, ["train.micro_batch_size=16"]).train.micro_batch_size == 16
    for bad in ("0", "big", "1.5"):
        with pytest.raises(ConfigError, match="train.micro_batch_size"):
            load_config(None, [f"train.micro_batch_size={bad}"])
    with pytest.raises(ConfigError, match="train.micro_batch_size: 'auto' has no size"):
        load_config(None, ["train.micro_batch_size=auto"]).grad_accum_steps(1)


@pytest.fixture(scope="module")
def auto_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], str]:
    """The reference run's config with `auto` on a device that runs out of memory above 4 sequences: the
    candidates are 8 (256 tokens / 32) and 4, so it trains at 4 x 2 micro-steps, as the reference does."""
    out = tmp_path_factory.mktemp("auto") / "run"
    tried: list[int] = []
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(auto_batch, "probe_micro_batch", simulated_oom(4, tried))
        train_in_process(tiny_config(tiny_data, out, "train.micro_batch_size=auto", "checkpoint.keep_last=2"))
    return out, tried, printed.getvalue()


def test_auto_trains_with_the_size_found_logs_and_saves_it(auto_run: tuple[Path, list[int], str],
                                                           reference_run: Path) -> None:
    out, tried, printed = auto_run
    assert tried == [8, 4]
    assert "train.micro_batch_size=auto: 4 (the largest that fits), 2 micro-step(s) per optimizer step" in printed
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["micro_batch_size"] == 4
    assert saved_micro_batch_size(out / "checkpoints" / "step_0000004") == 4
    # The search leaves no trace in the run: the same losses, to the bit, as giving 4 directly.
    assert training_losses(out) == training_losses(reference_run)


def test_resume_keeps_the_checkpoints_size_without_searching(auto_run: tuple[Path, list[int], str], tmp_path: Path,
                                                            tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, _, _ = auto_run
    out = tmp_path / "resumed"
    shutil.copytree(source / "checkpoints" / "step_0000004", out / "checkpoints" / "step_0000004")
    shutil.copy(source / "metrics.jsonl", out / "metrics.jsonl")
    tried: list[int] = []
    monkeypatch.setattr(auto_batch, "probe_micro_batch", simulated_oom(1, tried))  # a search would now pick 1
    result = train_in_process(tiny_config(tiny_data, out, "train.micro_batch_size=auto", "eval.num_samples=0"))
    assert result.step == 8 and tried == []
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["micro_batch_size"] == 4
    assert training_losses(out) == training_losses(source)


def test_two_processes_agree_and_train_as_one(tiny_data: Path, tmp_path: Path) -> None:
    """Two gloo processes probe for real (CPU: the largest candidate, 256 / (32 x 2) = 4 sequences), agree over
    the process group, and train the reference run's batch."""
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = start_pretrain(tiny_cli_args(tiny_data, out, "train.micro_batch_size=auto", "train.max_steps=4",
                                        "eval.num_samples=0"), subprocess_env(), launcher)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert "train.micro_batch_size=auto: 4 (the largest that fits), 1 micro-step(s) per optimizer step" in output
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["micro_batch_size"] == 4
    assert sorted(training_losses(out)) == [1, 2, 3, 4]
