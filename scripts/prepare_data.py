"""`nanogpt2 prepare` as a script (same flags: `python scripts/prepare_data.py --help`)."""
import sys

from nanogpt2.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("prepare"))
