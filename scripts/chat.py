"""`nanogpt2 chat` as a script (same flags: `python scripts/chat.py --help`)."""
import sys

from nanogpt2.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("chat"))
