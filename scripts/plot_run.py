"""Write a run's plots (loss and HellaSwag against tokens) into OUT/plots/.

    python scripts/plot_run.py OUT [--reference | --no-reference]

OUT is a run folder with a metrics.jsonl (as written by scripts/pretrain.py). The GPT-2 124M
validation-loss reference line is drawn when the run's data is FineWeb-Edu tokenized with GPT-2's
tokenizer (read from OUT/config.yaml and the data's meta.json); --reference / --no-reference force it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nanogpt2.training.plots import write_run_plots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write OUT/plots/*.png from OUT/metrics.jsonl.")
    parser.add_argument("run_dir", type=Path, metavar="OUT", help="run folder containing metrics.jsonl")
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw the GPT-2 124M FineWeb-Edu val-loss line (default: only when the data is comparable)",
    )
    args = parser.parse_args(argv)
    metrics = args.run_dir / "metrics.jsonl"
    if not metrics.is_file():
        print(f"error: {metrics} does not exist; is {args.run_dir} a run folder?", file=sys.stderr)
        return 2
    written = write_run_plots(args.run_dir, reference=args.reference)
    if not written:
        print(f"error: {metrics} has no loss or HellaSwag records to plot yet", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
