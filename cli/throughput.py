"""Steady-state throughput of a run from its metrics.jsonl: median tokens/s, step time and MFU.

    nanogpt2 throughput runs/smoke
    nanogpt2 throughput runs/gpt2-124m --skip 20

Medians over the training steps after the first --skip (allocation, compilation). A step's time covers
its forward, backward and optimizer work only; MFU is shown on GPUs whose peak FLOP/s is known.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..reporting import summarize_throughput


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="run folder holding metrics.jsonl")
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps to leave out (default: 5)")


def run(args: argparse.Namespace) -> int:
    s = summarize_throughput(args.run_dir, args.skip)
    mfu = f"{100 * s['mfu']:.1f}%" if s["mfu"] is not None else "n/a (no known peak for this device)"
    print(f"steps {s['first_step']}-{s['last_step']} ({s['steps']}): median {s['tokens_per_s']:,.0f} tokens/s, "
          f"{s['step_time_s'] * 1000:.1f} ms/step, MFU {mfu}")
    return 0
