"""Push a finished run's model, or one checkpoint's weights, to the Hugging Face Hub.

    python scripts/push_to_hub.py runs/gpt2-124m --repo-id user/nanogpt2-124m
    python scripts/push_to_hub.py runs/gpt2-124m/checkpoints/step_0010000 --repo-id user/nanogpt2-124m

A run folder pushes `final/` (save_pretrained weights, modeling code, tokenizer, model card) to the
repository root; a checkpoint folder pushes its weights and config.yaml to `checkpoints/step_NNNNNNN/`.
The token is the one `huggingface_hub` finds (HF_TOKEN or `huggingface-cli login`); it is never printed.
A failed upload is retried (--retries) and the exit code is 1 if it still fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nanogpt2.training import HubPusher
from nanogpt2.training.checkpointing import checkpoint_step


def upload_plan(folder: Path) -> tuple[Path, str, str, list[str] | None]:
    """(local folder, path in the repository, commit message, allow patterns) for a run or a checkpoint."""
    if (folder / "final" / "config.json").is_file():
        folder = folder / "final"
    if (folder / "config.json").is_file():
        return folder, "", f"Upload model from {folder}", None
    try:
        step = checkpoint_step(folder)
    except ValueError:
        step = None
    if step is not None and (folder / "model.safetensors").is_file():
        return folder, f"checkpoints/{folder.name}", f"Checkpoint at step {step}", ["model.safetensors", "config.yaml"]
    raise SystemExit(f"error: {folder} is neither a run with final/, a save_pretrained folder, nor a checkpoint "
                     f"(checkpoints/step_NNNNNNN)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="run folder (OUT), OUT/final, or OUT/checkpoints/step_NNNNNNN")
    parser.add_argument("--repo-id", required=True, help="target model repository, user/name")
    parser.add_argument("--public", action="store_true", help="create the repository public (default: private)")
    parser.add_argument("--retries", type=int, default=2, help="retries of a failed upload (default: 2)")
    args = parser.parse_args(argv)
    folder, path_in_repo, message, allow = upload_plan(args.folder)
    pusher = HubPusher(args.repo_id, private=not args.public)
    pusher.push(folder, path_in_repo, message, allow_patterns=allow)
    return 0 if pusher.close(retries=args.retries) else 1


if __name__ == "__main__":
    sys.exit(main())
