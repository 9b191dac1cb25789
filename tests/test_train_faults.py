"""Faults in a real subprocess: kill -9 (also inside a checkpoint write) and SIGTERM, then resume."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from _train_helpers import (
    start_pretrain,
    subprocess_env,
    tiny_cli_args,
    tiny_config,
    train_in_process,
    training_losses,
)

from nanogpt2.utils import read_jsonl

# Long enough (40 steps) that a signal sent after step 3 lands mid-run.
FAULT_OVERRIDES = ("train.max_steps=40", "train.warmup_steps=5", "checkpoint.every=5", "checkpoint.keep_last=2",
                   "eval.every=20", "eval.num_samples=0")


@pytest.fixture(scope="module")
def straight_losses(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    out = tmp_path_factory.mktemp("straight") / "run"
    train_in_process(tiny_config(tiny_data, out, *FAULT_OVERRIDES))
    return training_losses(out)


def _wait_for_step(proc: subprocess.Popen, metrics: Path, step: int, timeout: float = 120.0) -> int:
    """Poll metrics.jsonl until a training record of `step` or later appears; return the newest step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = proc.poll() is not None
        steps = [r["step"] for r in read_jsonl(metrics) if "loss" in r]
        if steps and steps[-1] >= step:
            return steps[-1]
        if exited:
            raise AssertionError(f"training exited before step {step} (rc {proc.returncode}):\n{proc.stdout.read()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no step {step} within {timeout} s")


def _finish_in_process(data: Path, out: Path) -> None:
    result = train_in_process(tiny_config(data, out, *FAULT_OVERRIDES))
    assert result.step == 40 and result.stopped_by is None


def test_kill_9_mid_checkpoint_and_mid_step_then_resume_exactly(
    tiny_data: Path, tmp_path: Path, straight_losses: dict[int, float]
) -> None:
    out = tmp_path / "killed"
    args = tiny_cli_args(tiny_data, out, *FAULT_OVERRIDES)

    # 1. Killed inside the write of the step-10 checkpoint (state saved, not yet renamed).
    proc = start_pretrain(args, subprocess_env(NANOGPT2_KILL_AT="checkpoint_before_rename:10"))
    proc.wait(timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
    checkpoints = out / "checkpoints"
    assert (checkpoints / ".tmp-step_0000010").is_dir()
    assert sorted(p.name for p in checkpoints.glob("step_*")) == ["step_0000005"]

    # 2. Restarted: resumes from step 5, ignores the torn write; killed again at an arbitrary step.
    proc = start_pretrain(args, subprocess_env())
    reached = _wait_for_step(proc, out / "metrics.jsonl", 13)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert reached >= 13
    assert not (checkpoints / ".tmp-step_0000010").exists()

    # 3. Third start runs to the end: every step logged once, losses equal to an uninterrupted run.
    _finish_in_process(tiny_data, out)
    assert training_losses(out) == straight_losses
    assert (out / "final" / "model.safetensors").is_file()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_0000035", "step_0000040"]


def test_sigterm_finishes_the_step_checkpoints_and_exits_cleanly(
    tiny_data: Path, tmp_path: Path, straight_losses: dict[int, float]
) -> None:
    out = tmp_path / "terminated"
    proc = start_pretrain(tiny_cli_args(tiny_data, out, *FAULT_OVERRIDES), subprocess_env())
    _wait_for_step(proc, out / "metrics.jsonl", 3)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "stopped by SIGTERM" in output
    last_step = max(training_losses(out))
    assert last_step < 40 and not (out / "final").exists()
    assert (out / "checkpoints" / f"step_{last_step:07d}").is_dir()  # the step it was in, saved

    _finish_in_process(tiny_data, out)
    assert training_losses(out) == straight_losses
