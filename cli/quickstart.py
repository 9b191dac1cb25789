"""Prepare a corpus, pretrain a small GPT-2 on a CPU, evaluate, plot, save and reload it, offline.

    nanogpt2 quickstart
    nanogpt2 quickstart --out runs/my-notes --source notes/ --tokenizer train --vocab-size 2048
    nanogpt2 quickstart --max-steps 100 model.n_layer=2 eval.every=50
    nanogpt2 quickstart --chat --question 'What does `os.path.join` do?'

Stages (each printed with its elapsed time): 1. the corpus, Python's own documentation or your
--source files; 2. the tokenizer, GPT-2's when it loads (local cache or the Hub), else a byte-level
BPE with GPT-2's pre-tokenization trained on the corpus; 3. the data, Arrow shards in OUT/data;
4. pretraining with configs/quickstart.yaml (trailing key=value pairs override it); 5. a fresh
Python process loads OUT/final as anyone downloading it would, and generates. With --chat, 6. the
chat stage: conversations about Python from its documentation, a fine-tune of OUT/final on them with
configs/sft-smoke.yaml into OUT/sft (--sft-set key=value overrides it), the end-of-turn rate before
and after, and an answer to --question from a fresh process through the chat template.

Re-running reuses the corpus, tokenizer and prepared data and continues from the newest checkpoint;
--fresh deletes OUT first (only a folder the quickstart made).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from ..quickstart.pipeline import Options, run_quickstart


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Options()
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides of configs/quickstart.yaml, e.g. model.n_layer=2 eval.every=50")
    parser.add_argument("--out", type=Path, default=defaults.out, help="output folder")
    parser.add_argument("--source", nargs="+", dest="sources", metavar="FILE_OR_FOLDER",
                        help="your own .txt/.jsonl/.parquet files, folders or globs (default: Python's docs)")
    parser.add_argument("--tokenizer", default=defaults.tokenizer,
                        help="'auto' (GPT-2's if it loads, else train one), 'train', or a tokenizer folder / Hub id")
    parser.add_argument("--vocab-size", type=int, default=defaults.vocab_size, help="size of a trained tokenizer")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="optimizer steps (default: the preset's 500, fewer for a larger vocabulary)")
    parser.add_argument("--max-tokens", type=int, default=None, help="use at most this many corpus tokens")
    parser.add_argument("--val-tokens", type=int, default=defaults.val_tokens,
                        help="tokens held out for validation, from the start of the corpus")
    parser.add_argument("--hellaswag", default=None, metavar="PATH",
                        help="local HellaSwag jsonl (default: the Hub's validation split, when reachable)")
    parser.add_argument("--prompt", default=defaults.prompt, help="prompt of the final generation")
    parser.add_argument("--fresh", action="store_true", help="delete OUT (a quickstart folder) first")
    parser.add_argument("--chat", action="store_true",
                        help="then fine-tune the model to answer questions about Python (the chat stage)")
    parser.add_argument("--question", default=defaults.question,
                        help="with --chat: the question the fine-tuned model answers in a fresh process")
    parser.add_argument("--chat-conversations", type=int, default=None, metavar="N",
                        help="with --chat: fine-tune on at most N conversations (default: all, a few thousand)")
    parser.add_argument("--sft-set", action="append", default=[], dest="sft_overrides", metavar="key=value",
                        help="with --chat: override configs/sft-smoke.yaml (repeatable), e.g. train.epochs=1")


def run(args: argparse.Namespace) -> int:
    result = run_quickstart(Options(**{option.name: getattr(args, option.name) for option in fields(Options)}))
    return 0 if result is not None and result.reloaded else 1
