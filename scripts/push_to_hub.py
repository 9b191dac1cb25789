"""`nanogpt2 push` as a script (same flags: `python scripts/push_to_hub.py --help`)."""
import sys

from nanogpt2.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("push"))
