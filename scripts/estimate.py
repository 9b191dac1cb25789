"""`nanogpt2 estimate` as a script (same flags: --help)."""

import sys

from nanogpt2.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("estimate"))
