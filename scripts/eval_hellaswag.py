"""`nanogpt2 eval-hellaswag` as a script (same flags: `python scripts/eval_hellaswag.py --help`)."""
import sys

from nanogpt2.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("eval-hellaswag"))
