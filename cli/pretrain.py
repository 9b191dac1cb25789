"""Pretrain a GPT-2 (or continue a run): a YAML preset from configs/ plus dotted key=value overrides.

    nanogpt2 pretrain --config configs/smoke.yaml data.path=prepared/smoke out_dir=runs/smoke
    accelerate launch --config_file configs/accelerate/8gpu.yaml scripts/pretrain.py \\
        --config configs/gpt2-124m.yaml data.path=prepared/fineweb-edu-10B
    torchrun --nproc_per_node 2 scripts/pretrain.py --config configs/smoke.yaml train.max_steps=20
    nanogpt2 pretrain --help-config          # every key, its default and its meaning

Running the same command again continues from the newest intact checkpoint (resume=auto);
`resume=none` starts over, `resume=PATH` starts from that checkpoint. SIGTERM/SIGINT finish the
current step, write a checkpoint and exit.
"""

from __future__ import annotations

import argparse
import sys

from ..training import (
    NonFiniteLossError,
    RunConfig,
    config_reference_markdown,
    describe_fields,
    load_config,
    train,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="YAML preset (configs/*.yaml) listing what differs from the defaults (GPT-2 124M)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides applied after the preset, e.g. train.max_steps=20 seed=1")
    parser.add_argument("--help-config", action="store_true", help="list every config key and exit")
    parser.add_argument("--markdown", action="store_true", help="with --help-config: the README's table")


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        if args.markdown:
            print(config_reference_markdown())
        for key, default, doc in [] if args.markdown else describe_fields():
            print(f"{key} = {default!r}\n    {doc}")
        return 0
    return train_and_report(load_config(args.config, args.overrides))


def train_and_report(config: RunConfig) -> int:
    """Train; a diverged run is one line and exit 1, a stopped one says where its checkpoint is."""
    try:
        result = train(config)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if result.stopped_by:
        print(f"stopped by {result.stopped_by} at step {result.step}; checkpoint written to {result.out_dir}")
    return 0
