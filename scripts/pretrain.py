"""Pretrain a GPT-2 style model: a preset from configs/ plus dotted key=value overrides.

    python scripts/pretrain.py --config configs/smoke.yaml data.path=data/smoke out_dir=runs/smoke
    accelerate launch --config_file configs/accelerate/8gpu.yaml scripts/pretrain.py \\
        --config configs/gpt2-124m.yaml data.path=data/fineweb-edu-10B
    torchrun --nproc_per_node 2 scripts/pretrain.py --config configs/smoke.yaml data.path=data/smoke

Rerunning the same command continues from the newest complete checkpoint (resume=auto);
`resume=none` starts over, `resume=PATH` starts from that checkpoint. SIGTERM/SIGINT finish the
current step, write a checkpoint and exit. `--help-config` lists every key with its default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nanogpt2.training import ConfigError, NonFiniteLossError, describe_fields, load_config, train
from nanogpt2.training.config import config_reference_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="overrides: dotted key=value pairs, e.g. train.max_steps=20 checkpoint.every=5 seed=1",
    )
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML preset (configs/*.yaml) listing what differs from the defaults (GPT-2 124M)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied after the preset")
    parser.add_argument("--help-config", action="store_true", help="list every config key and exit")
    parser.add_argument("--markdown", action="store_true", help="with --help-config: print the README's table")
    args = parser.parse_args(argv)
    if args.help_config and args.markdown:
        print(config_reference_markdown())
        return 0
    if args.help_config:
        for key, default, doc in describe_fields():
            print(f"{key} = {default!r}\n    {doc}")
        return 0
    try:
        config = load_config(args.config, args.overrides)
        result = train(config)
    except (ConfigError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1
    if result.stopped_by:
        print(f"stopped by {result.stopped_by} at step {result.step}; checkpoint written to {result.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
