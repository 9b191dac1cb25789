"""`nanogpt2 generate` as a script (same flags: `python scripts/generate.py --help`)."""
import sys

from nanogpt2.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("generate"))
