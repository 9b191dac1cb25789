"""`nanogpt2 pretrain` as a script, for `accelerate launch scripts/pretrain.py ...` (same flags: --help)."""

import sys

from nanogpt2.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("pretrain"))
