"""Tokenize FineWeb-Edu or local text into memory-mapped Arrow shards for pretraining.

    nanogpt2 prepare --source fineweb-edu --output-dir prepared/fineweb-edu-10B [--subset sample-10BT]
        [--streaming] [--tokenizer openai-community/gpt2] [--num-proc 8]
    nanogpt2 prepare --source corpus/*.jsonl books/ notes.txt --output-dir prepared/local
        [--text-column text] [--txt-split file|paragraph] [--val-tokens 10485760]
        [--max-tokens N] [--max-docs N] [--tokens-per-shard 100000000]

Writes OUT/train/, OUT/val/ (`datasets.load_from_disk`), OUT/tokenizer/ and OUT/meta.json.
Re-running with the same arguments over complete output says so and exits; different arguments
into an existing folder is an error. Bad input exits with status 2 and a message naming the file.
"""

from __future__ import annotations

import argparse
import os

from ..data import DEFAULT_TOKENIZER, DEFAULT_TOKENS_PER_SHARD, DEFAULT_VAL_TOKENS, TXT_SPLITS, prepare_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", nargs="+", required=True,
                        help="'fineweb-edu' (HuggingFaceFW/fineweb-edu) or local .txt/.jsonl/.parquet files, "
                             "folders and globs")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help="Hub id or local tokenizer folder")
    parser.add_argument("--subset", default="sample-10BT", help="FineWeb-Edu config, e.g. sample-10BT, sample-100BT")
    parser.add_argument("--streaming", action="store_true", help="stream FineWeb-Edu instead of downloading it")
    parser.add_argument("--text-column", default="text", help="text field of .jsonl / column of .parquet")
    parser.add_argument("--txt-split", choices=TXT_SPLITS, default="file",
                        help=".txt documents: one per file, or separated by blank lines (paragraph)")
    parser.add_argument("--val-tokens", type=int, default=DEFAULT_VAL_TOKENS,
                        help="validation split: the first documents holding at least this many tokens")
    parser.add_argument("--max-tokens", type=int, default=None, help="cap on the tokens of both splits together")
    parser.add_argument("--max-docs", type=int, default=None, help="cap on the documents read")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="tokenizer processes")
    parser.add_argument("--tokens-per-shard", type=int, default=DEFAULT_TOKENS_PER_SHARD)


def run(args: argparse.Namespace) -> int:
    prepare_data(
        args.source, args.output_dir, tokenizer=args.tokenizer, subset=args.subset, text_column=args.text_column,
        val_tokens=args.val_tokens, max_tokens=args.max_tokens, max_docs=args.max_docs, num_proc=args.num_proc,
        streaming=args.streaming, txt_split=args.txt_split, tokens_per_shard=args.tokens_per_shard,
    )
    return 0
