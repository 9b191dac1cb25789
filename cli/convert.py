"""Convert between nanogpt2 and transformers' own GPT2LMHeadModel, exactly (the same logits).

    # OpenAI's GPT-2 (or any GPT-2 folder) -> nanogpt2, vocabulary padded to a multiple of 64
    nanogpt2 convert --from-hf openai-community/gpt2 --out gpt2-nanogpt2 --pad-vocab 64
    # nanogpt2 -> a plain GPT-2 folder that needs no remote code (vLLM, TGI, llama.cpp's converter)
    nanogpt2 convert --to-hf runs/gpt2-124m/final --out gpt2-plain

A tokenizer found in the source folder is saved beside the converted weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers import AutoTokenizer

from ..modeling import NanoGPT2LMHeadModel, convert_from_hf_gpt2, convert_to_hf_gpt2
from ..utils import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from-hf", metavar="DIR_OR_HUB_ID", help="GPT-2 checkpoint to convert to nanogpt2")
    direction.add_argument("--to-hf", metavar="DIR", help="nanogpt2 checkpoint to convert to plain GPT-2")
    parser.add_argument("--out", required=True, type=Path, help="output folder (save_pretrained)")
    parser.add_argument("--pad-vocab", type=int, default=None, metavar="N",
                        help="--from-hf: pad the vocabulary to a multiple of N (64 gives 50304 for GPT-2)")
    parser.add_argument("--keep-vocab-padding", action="store_true",
                        help="--to-hf: keep padded vocabulary rows (plain GPT-2 would then be able to emit them)")


def run(args: argparse.Namespace) -> int:
    if args.pad_vocab is not None and args.pad_vocab < 1:
        raise InputError(f"--pad-vocab must be >= 1, got {args.pad_vocab}")
    source = args.from_hf or args.to_hf
    try:
        if args.from_hf:
            model = convert_from_hf_gpt2(source, pad_vocab_to_multiple_of=args.pad_vocab)
        else:
            model = convert_to_hf_gpt2(NanoGPT2LMHeadModel.from_pretrained(source),
                                       keep_vocab_padding=args.keep_vocab_padding)
    except (OSError, ValueError) as error:  # no such folder / Hub id (or not cached offline), another model
        reason = str(error).splitlines()[0]
        raise InputError(f"cannot convert {source!r} (a model folder or Hub id): {reason}") from None
    model.save_pretrained(args.out)
    try:
        AutoTokenizer.from_pretrained(source).save_pretrained(args.out)
        tokenizer = "with its tokenizer"
    except (OSError, ValueError):
        tokenizer = "(no tokenizer found in the source)"
    print(f"wrote {type(model).__name__} ({model.num_parameters():,} parameters) to {args.out} {tokenizer}")
    return 0
