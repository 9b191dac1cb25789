"""Push a finished run's model, or one checkpoint's weights, to the Hugging Face Hub.

    nanogpt2 push runs/gpt2-124m --repo-id you/nanogpt2-124m
    nanogpt2 push runs/gpt2-124m/checkpoints/step_0010000 --repo-id you/nanogpt2-124m

A run folder pushes `final/` (save_pretrained weights, modeling code, tokenizer, model card) to the
repository root; a checkpoint folder pushes its weights and config.yaml to `checkpoints/step_NNNNNNN/`.
The token is the one `huggingface_hub` finds (HF_TOKEN or `hf auth login`); it is never printed.
A failed upload is retried (--retries) and the exit status is 1 if it still fails.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from huggingface_hub import constants

from ..publishing import HubPublisher
from ..training.checkpointing import checkpoint_step
from ..utils import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="run folder (OUT), OUT/final, or OUT/checkpoints/step_NNNNNNN")
    parser.add_argument("--repo-id", required=True, help="target model repository, user/name")
    parser.add_argument("--public", action="store_true", help="create the repository public (default: private)")
    parser.add_argument("--retries", type=int, default=2, help="retries of a failed upload (default: 2)")


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
    raise InputError(f"{folder} is neither a run with final/, a save_pretrained folder, nor a checkpoint "
                     "(checkpoints/step_NNNNNNN with model.safetensors)")


def run(args: argparse.Namespace) -> int:
    if args.retries < 0:
        raise InputError(f"--retries must be >= 0, got {args.retries}")
    folder, path_in_repo, message, allow = upload_plan(args.folder)
    if constants.HF_HUB_OFFLINE:
        raise InputError(f"HF_HUB_OFFLINE is set: cannot push {folder} to {args.repo_id}; unset it and retry")
    publisher = HubPublisher(args.repo_id, private=not args.public)
    publisher.push(folder, path_in_repo, message, allow_patterns=allow)
    return 0 if publisher.close(retries=args.retries) else 1
