"""Two CPU processes (gloo DDP through torchrun) reproduce one process with twice the accumulation."""

from __future__ import annotations

from pathlib import Path

import pytest
from _train_helpers import pretrain_on_two_processes, tiny_cli_args, training_losses

from nanogpt2.utils import read_jsonl


def test_two_processes_match_one_process_with_double_accumulation(
    tiny_data: Path, reference_run: Path, tmp_path: Path
) -> None:
    # One process: 2 micro-steps of 4 x 32 per step. Two processes: 1 micro-step each, same 256 tokens.
    data, single = tiny_data, reference_run
    out = tmp_path / "ddp"
    output = pretrain_on_two_processes(tiny_cli_args(data, out, "checkpoint.keep_last=2"))
    assert "1 micro-step(s) of 4 x 32 tokens on each of 2 process(es) (MULTI_CPU)" in output

    one, two = training_losses(single), training_losses(out)
    assert sorted(two) == list(range(1, 9))
    for step in one:
        assert two[step] == pytest.approx(one[step], abs=1e-5), f"step {step}"
    val_one = [r["val_loss"] for r in read_jsonl(single / "metrics.jsonl") if "val_loss" in r]
    val_two = [r["val_loss"] for r in read_jsonl(out / "metrics.jsonl") if "val_loss" in r]
    assert val_two == pytest.approx(val_one, abs=1e-5)
    # Both processes wrote their data position into the checkpoint.
    assert sorted(p.name for p in (out / "checkpoints" / "step_0000008").glob("loader_rank*.pt")) == [
        "loader_rank0.pt", "loader_rank1.pt"]
