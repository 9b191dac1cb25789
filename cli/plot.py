"""Write a run's plots (loss and HellaSwag against tokens) into OUT/plots/.

    nanogpt2 plot runs/gpt2-124m
    nanogpt2 plot runs/smoke --no-reference

OUT is a run folder with a metrics.jsonl (as `nanogpt2 pretrain` writes it). The GPT-2 124M
reproduction's validation-loss line is drawn when the run's data is FineWeb-Edu tokenized with GPT-2's
tokenizer (read from OUT/config.yaml and the data's meta.json); --reference / --no-reference force it.
Prints the written files, one a line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..reporting import write_run_plots
from ..utils import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="OUT", help="run folder containing metrics.jsonl")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=None,
                        help="draw the reproduction's FineWeb-Edu val-loss line (default: when the data compares)")


def run(args: argparse.Namespace) -> int:
    metrics = args.run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise InputError(f"{metrics} does not exist; is {args.run_dir} a run folder?")
    written = write_run_plots(args.run_dir, reference=args.reference)
    if not written:
        print(f"{metrics} has no loss or HellaSwag records to plot yet", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
