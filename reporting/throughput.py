"""Steady-state throughput of a run from its own `metrics.jsonl`: medians over the steps after warm-up.

A step's time covers its forward, backward and optimizer work only: evaluations and checkpoint writes
are outside it. The first steps (allocation, compilation) are left out.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ..utils import InputError, read_jsonl


def summarize_throughput(run_dir: str | Path, skip: int = 5) -> dict[str, Any]:
    """Medians of tokens_per_s, step_time_s and mfu (None without a known peak) over the training records
    after the first `skip` steps, with the number and range of steps they cover."""
    path = Path(run_dir) / "metrics.jsonl"
    steps = [r for r in read_jsonl(path) if "loss" in r and "tokens_per_s" in r and r.get("step", 0) > skip]
    if not steps:
        raise InputError(f"{path}: no training steps after step {skip} (is {run_dir} a run folder?)")
    mfu = [r["mfu"] for r in steps if r.get("mfu") is not None]
    return {
        "steps": len(steps),
        "first_step": steps[0]["step"],
        "last_step": steps[-1]["step"],
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steps),
        "step_time_s": statistics.median(r["step_time_s"] for r in steps),
        "mfu": statistics.median(mfu) if mfu else None,
    }
