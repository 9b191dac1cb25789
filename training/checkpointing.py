"""Resumable checkpoints: `OUT/checkpoints/step_NNNNNNN/`, written whole or not at all, verified before use.

A checkpoint is `accelerator.save_state` (model, optimizer, scheduler, RNG states, the registered
`TrainingState`), each process's token-loader position and the resolved config, then, last, a
`manifest.json` of every file's size and SHA-256, the world size and the distributed type (a sharded
FSDP checkpoint resumes only into an FSDP run). It is written into `.tmp-step_NNNNNNN/` and renamed
once every process has finished, so a kill at any moment leaves the previous checkpoints or the new
one. A checkpoint damaged later (a partial copy, a full disk, bit rot) no longer matches its manifest:
`resume=auto` sets it aside (renamed `step_NNNNNNN.damaged`, nothing deleted) with a warning and
continues from the newest intact one; `resume=PATH` to a damaged one is an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from ..utils import InputError, sha256_file, write_json, write_text

CHECKPOINT_DIR = "checkpoints"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^step_(\d{7})$")
_TMP_PREFIX = ".tmp-"
# Name of an environment variable that makes the process kill itself (SIGKILL) at a point of the
# checkpoint write, e.g. "checkpoint_before_rename:4": how tests check that a torn write is ignored.
KILL_AT_ENV = "NANOGPT2_KILL_AT"


class CheckpointError(InputError):
    """A checkpoint named by `resume=` is missing, incomplete or damaged, or does not fit this run."""


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


def checkpoint_step(path: str | Path) -> int:
    match = _NAME.match(Path(path).name)
    if not match:
        raise InputError(f"{path} is not a checkpoint folder (expected a name like step_0001000)")
    return int(match.group(1))


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Checkpoint folders of a run (written whole, not yet verified), oldest first."""
    root = Path(out_dir) / CHECKPOINT_DIR
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)] if root.is_dir() else []
    return sorted(found, key=checkpoint_step)


def damage(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be trusted (a missing, resized or altered file), or None."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST}"
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected["bytes"]:
            return f"{name} has {file.stat().st_size} bytes, {expected['bytes']} were written"
        if sha256_file(file) != expected["sha256"]:
            return f"{name} differs from what was written (SHA-256 mismatch)"
    return None


def resolve_resume(resume: str, out_dir: str | Path, warn: Callable[[str], None]) -> Path | None:
    """The checkpoint to start from: 'auto' -> the newest intact one (or None), 'none' -> None, else `resume`."""
    if resume == "none":
        return None
    if resume == "auto":
        for path in reversed(list_checkpoints(out_dir)):
            problem = damage(path)
            if problem is None:
                return path
            warn(f"warning: checkpoint {path} is damaged ({problem}); falling back to an older one")
        return None
    path = Path(resume)
    if not path.is_dir():
        raise CheckpointError(f"resume={resume}: no such checkpoint folder (expected e.g. "
                              f"{Path(out_dir) / CHECKPOINT_DIR / checkpoint_name(1000)})")
    problem = damage(path)
    if problem is not None:
        raise CheckpointError(f"resume={resume}: the checkpoint is damaged ({problem}); choose another one")
    return path


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint out of the way (kept for inspection, invisible to `list_checkpoints`)."""
    target = path.with_name(f"{path.name}.damaged")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target


def remove_stale_temporaries(out_dir: str | Path) -> None:
    """Delete `.tmp-*` folders left by a kill during a checkpoint write (main process only)."""
    root = Path(out_dir) / CHECKPOINT_DIR
    for p in root.glob(f"{_TMP_PREFIX}*") if root.is_dir() else []:
        shutil.rmtree(p, ignore_errors=True)


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


def _maybe_kill(point: str, step: int) -> None:
    if os.environ.get(KILL_AT_ENV) == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(accelerator: Accelerator, out_dir: str | Path, step: int, loader_state: dict[str, Any],
                    config_yaml: str, keep_last: int) -> Path:
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
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_text(tmp / "config.yaml", config_yaml)
        files = {p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json(tmp / MANIFEST, {"step": step, "world_size": accelerator.num_processes,
                                    "distributed_type": accelerator.distributed_type.value, "files": files})
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
    manifest = json.loads((path / MANIFEST).read_text())
    saved_world, saved_type = manifest["world_size"], manifest.get("distributed_type", "")
    sharded = accelerator.distributed_type == DistributedType.FSDP
    if (saved_type == DistributedType.FSDP.value) != sharded:
        raise CheckpointError(
            f"checkpoint {path} holds {'sharded (FSDP)' if not sharded else 'unsharded'} model and optimizer "
            f"state, and this run is {accelerator.distributed_type.value}: launch it as the checkpoint was "
            f"written ({saved_type or 'without FSDP'}), or start a new run (resume=none, another out_dir)"
        )
    if saved_world != accelerator.num_processes:
        raise CheckpointError(
            f"checkpoint {path} was written by {saved_world} processes, this run has "
            f"{accelerator.num_processes}: the data position of each process cannot be carried over; "
            f"launch with {saved_world} processes or start a new run (resume=none, another out_dir)"
        )
    accelerator.load_state(str(path))
    return torch.load(path / f"loader_rank{accelerator.process_index}.pt", weights_only=True)
