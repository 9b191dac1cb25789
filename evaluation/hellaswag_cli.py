"""Command line HellaSwag evaluation of a causal LM (a nanogpt2 folder, a GPT-2 folder or Hub id).

    python scripts/eval_hellaswag.py --model openai-community/gpt2 --output gpt2_hellaswag.json
    python scripts/eval_hellaswag.py --model runs/gpt2/final --data hellaswag_val.jsonl --style lm-eval --limit 1000
    accelerate launch --multi_gpu --num_processes 8 scripts/eval_hellaswag.py --model runs/gpt2/final \
        --mixed-precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .hellaswag import METRIC_KEYS, evaluate_hellaswag
from .hellaswag_data import describe_source, load_hellaswag
from .hellaswag_prompts import STYLES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a causal language model on HellaSwag.")
    parser.add_argument("--model", required=True, help="model folder (nanogpt2 or transformers) or Hub id")
    parser.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: the model's)")
    parser.add_argument("--data", help="HellaSwag jsonl in the original format (default: Rowan/hellaswag validation)")
    parser.add_argument("--style", choices=STYLES, default="nanogpt", help="prompt style (default: nanogpt)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N examples")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per forward pass (default: 32)")
    parser.add_argument("--output", type=Path, help="write the metrics as JSON to this file")
    parser.add_argument(
        "--mixed-precision", choices=("no", "bf16", "fp16"), default="no", help="autocast dtype (default: fp32)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a model folder's own code")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    return args


def load_causal_lm(name_or_path: str, *, trust_remote_code: bool = False) -> torch.nn.Module:
    """A causal LM in fp32 through `AutoModelForCausalLM`; nanogpt2 folders load without remote code."""
    from transformers import AutoModelForCausalLM

    try:
        import nanogpt2.modeling  # noqa: F401  (registers the nanogpt2 Auto classes)
    except ModuleNotFoundError as e:
        if e.name not in ("nanogpt2", "nanogpt2.modeling"):
            raise
    return AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, trust_remote_code=trust_remote_code)


def format_table(result: dict[str, Any], *, style: str, source: str) -> str:
    """The metrics as a small aligned text table."""
    rows = [("metric", "value")] + [(key, f"{result[key]:.4f}") for key in METRIC_KEYS]
    rows += [("n", str(result["n"])), ("style", style), ("data", source)]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file in the same folder and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    # cpu=True on a GPU-less machine lets Accelerate use gloo across processes started by torchrun.
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=not torch.cuda.is_available())
    examples = load_hellaswag(args.data, limit=args.limit)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model, trust_remote_code=args.trust_remote_code)
    model = load_causal_lm(args.model, trust_remote_code=args.trust_remote_code).to(accelerator.device)
    if args.compile:
        model = torch.compile(model, dynamic=True)

    result = evaluate_hellaswag(
        model,
        tokenizer,
        examples,
        style=args.style,
        batch_size=args.batch_size,
        accelerator=accelerator,
        progress=not args.no_progress,
    )
    source = describe_source(args.data)
    record = {**result, "style": args.style, "data": source, "model": args.model}
    if accelerator.is_main_process:
        print(format_table(result, style=args.style, source=source))
        if args.output is not None:
            write_json_atomic(args.output, record)
            print(f"wrote {args.output}")
    return record


if __name__ == "__main__":
    main()
