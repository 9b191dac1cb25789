"""Steady-state throughput of a run from its own `metrics.jsonl` (median over the steps after warm-up).

    python -m nanogpt2.training.throughput runs/smoke [--skip 5]

Prints the median tokens/s, step time and (on GPUs with a known peak) MFU of the training steps,
leaving out the first `--skip` steps (allocation, compilation). A step's time covers its forward,
backward and optimizer work only: evaluations and checkpoint writes are outside it.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from .metrics_log import read_jsonl


def summarize_throughput(run_dir: str | Path, skip: int = 5) -> dict[str, Any]:
    """Medians of tokens_per_s, step_time_s and mfu over the training records after the first `skip` steps."""
    steps = [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if "loss" in r and r["step"] > skip]
    if not steps:
        raise ValueError(f"{run_dir}: no training steps after step {skip} in metrics.jsonl")
    summary: dict[str, Any] = {
        "steps": len(steps),
        "first_step": steps[0]["step"],
        "last_step": steps[-1]["step"],
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steps),
        "step_time_s": statistics.median(r["step_time_s"] for r in steps),
    }
    mfu = [r["mfu"] for r in steps if r.get("mfu") is not None]
    summary["mfu"] = statistics.median(mfu) if mfu else None
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="run folder holding metrics.jsonl")
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps to leave out (default: 5)")
    args = parser.parse_args(argv)
    s = summarize_throughput(args.run_dir, args.skip)
    mfu = f"{100 * s['mfu']:.1f}%" if s["mfu"] is not None else "n/a (no known peak for this device)"
    print(f"steps {s['first_step']}-{s['last_step']} ({s['steps']}): median {s['tokens_per_s']:,.0f} tokens/s, "
          f"{s['step_time_s'] * 1000:.1f} ms/step, MFU {mfu}")


if __name__ == "__main__":
    main()
