"""Score a causal LM on HellaSwag: print acc, acc_norm, acc_norm_chars and n, optionally write them as JSON.

    nanogpt2 eval-hellaswag --model openai-community/gpt2 --output gpt2_hellaswag.json
    nanogpt2 eval-hellaswag --model runs/gpt2-124m/final --data hellaswag_val.jsonl --style lm-eval --limit 1000
    accelerate launch --multi_gpu --num_processes 8 scripts/eval_hellaswag.py --model runs/gpt2-124m/final \\
        --mixed-precision bf16

--model is a nanogpt2 or transformers model folder or a Hub id; without --data the validation split
of Rowan/hellaswag comes from the Hub. Under `accelerate launch` or torchrun the processes share the
batches and agree on the result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from accelerate import Accelerator

from ..evaluation import METRIC_KEYS, STYLES, evaluate_hellaswag, load_hellaswag
from ..evaluation.hellaswag import describe_source
from ..utils import write_json
from ..utils.models import load_model_and_tokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (nanogpt2 or transformers) or Hub id")
    parser.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: the model's)")
    parser.add_argument("--data", help="HellaSwag jsonl in the original format (default: Rowan/hellaswag validation)")
    parser.add_argument("--style", choices=STYLES, default="nanogpt", help="prompt style (default: nanogpt)")
    parser.add_argument("--limit", type=_positive, help="evaluate only the first N examples")
    parser.add_argument("--batch-size", type=_positive, default=32, help="examples per forward pass (default: 32)")
    parser.add_argument("--output", type=Path, help="write the metrics as JSON to this file")
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no",
                        help="autocast dtype (default: no, fp32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a model folder's own code")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    # cpu=True on a GPU-less machine lets Accelerate use gloo across processes started by torchrun.
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=not torch.cuda.is_available())
    examples = load_hellaswag(args.data, limit=args.limit)
    model, tokenizer = load_model_and_tokenizer(args.model, tokenizer=args.tokenizer,
                                                trust_remote_code=args.trust_remote_code)
    model = model.to(accelerator.device)
    if args.compile:
        model = torch.compile(model, dynamic=True)
    result = evaluate_hellaswag(model, tokenizer, examples, style=args.style, batch_size=args.batch_size,
                                accelerator=accelerator, progress=not args.no_progress)
    record = {**result, "style": args.style, "data": describe_source(args.data), "model": args.model}
    if accelerator.is_main_process:
        rows = [(key, f"{result[key]:.4f}") for key in METRIC_KEYS]
        rows += [(key, str(record[key])) for key in ("n", "style", "data")]
        print("\n".join(f"{key:<14}  {value}" for key, value in rows))
        if args.output is not None:
            write_json(args.output, record)
            print(f"wrote {args.output}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
