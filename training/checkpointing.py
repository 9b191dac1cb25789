"""Resumable checkpoints: `OUT/checkpoints/step_NNNNNNN/`, written whole or not at all.

A checkpoint is `accelerator.save_state` (model, optimizer, scheduler, RNG states, the registered
`TrainingState`) plus each process's token-loader position and the resolved config. It is written
into `.tmp-step_NNNNNNN/` and renamed once every process has finished, so a kill at any moment
leaves either the previous set of complete checkpoints or the new one; the discovery below only
ever sees complete ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{7})$")
_TMP_PREFIX = ".tmp-"
# Name of an environment variable that makes the process kill itself (SIGKILL) at a point of the
# checkpoint write, e.g. "checkpoint_before_rename:4": how tests check that a torn write is ignored.
KILL_AT_ENV = "NANOGPT2_KILL_AT"


@contextlib.contextmanager
def _quiet_tied_weight_warning():
    """Accelerate warns at every save that it dropped `lm_head.weight`: that is the tied output layer,
    stored once as `transformer.wte.weight` and tied again on load (resume is tested bit-exact)."""
    log = logging.getLogger("accelerate.utils.other")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


@dataclass
class TrainingState:
    """Progress saved with each checkpoint through `accelerator.register_for_checkpointing`."""

    step: int = 0
    """Optimizer steps completed."""
    tokens: int = 0
    """Training tokens consumed over all processes."""
    tracker_run_id: str | None = None
    """Tracker (wandb) run id, so a resumed run continues the same tracker run."""

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.tokens = int(state["tokens"])
        self.tracker_run_id = state.get("tracker_run_id")


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(out_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))  # type: ignore[union-attr]


def checkpoint_step(path: str | Path) -> int:
    match = _NAME.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a checkpoint folder (expected a name like step_0001000)")
    return int(match.group(1))


def resolve_resume(resume: str, out_dir: str | Path) -> Path | None:
    """The checkpoint to start from: 'auto' -> newest complete one (or None), 'none' -> None, else a path."""
    if resume == "none":
        return None
    if resume == "auto":
        found = list_checkpoints(out_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / "world_size.txt").is_file():
        raise FileNotFoundError(f"resume={resume}: not a complete checkpoint folder (expected e.g. "
                                f"{Path(out_dir) / CHECKPOINT_DIR / checkpoint_name(1000)})")
    return path


def remove_stale_temporaries(out_dir: str | Path) -> None:
    """Delete `.tmp-*` folders left by a kill during a checkpoint write (main process only)."""
    root = Path(out_dir) / CHECKPOINT_DIR
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(_TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)


def _maybe_kill(point: str, step: int) -> None:
    if os.environ.get(KILL_AT_ENV) == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(
    accelerator: Accelerator, out_dir: str | Path, step: int, loader_state: dict[str, Any], config_yaml: str,
    keep_last: int,
) -> Path:
    """Write the checkpoint of `step` (every process calls this) and keep only the newest `keep_last`."""
    root = Path(out_dir) / CHECKPOINT_DIR
    final = root / checkpoint_name(step)
    if final.is_dir():  # already saved at this step (e.g. a stop signal right after a periodic save)
        return final
    tmp = root / f"{_TMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    with _quiet_tied_weight_warning():
        accelerator.save_state(str(tmp))
    # Each process reads its own shard of the data, so each saves its own position.
    torch.save(loader_state, tmp / f"loader_rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        (tmp / "config.yaml").write_text(config_yaml)
        (tmp / "world_size.txt").write_text(f"{accelerator.num_processes}\n")
    _maybe_kill("checkpoint_before_rename", step)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        os.replace(tmp, final)
        for old in list_checkpoints(out_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: Path) -> dict[str, Any]:
    """Restore everything `save_checkpoint` wrote; return this process's loader state."""
    saved_world = int((path / "world_size.txt").read_text())
    if saved_world != accelerator.num_processes:
        raise RuntimeError(
            f"checkpoint {path} was written by {saved_world} processes, this run has "
            f"{accelerator.num_processes}: the data position of each process cannot be carried over; "
            f"launch with {saved_world} processes or start a new run (resume=none, another out_dir)"
        )
    accelerator.load_state(str(path))
    return torch.load(path / f"loader_rank{accelerator.process_index}.pt", weights_only=False)
