"""Train a GPT-2-style byte-level BPE tokenizer on your text and save it as a tokenizer folder.

    nanogpt2 train-tokenizer OUT_DIR FILE_OR_FOLDER [...] [--vocab-size 8192]
    nanogpt2 train-tokenizer tokenizers/notes-4k notes/ --vocab-size 4096

Files are read as `nanogpt2 prepare` reads them (.txt, .jsonl field `text`, .parquet column `text`;
folders and globs expand). The folder loads with `AutoTokenizer.from_pretrained(OUT_DIR)`; pass it
to `nanogpt2 prepare --tokenizer OUT_DIR`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import train_byte_level_bpe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder to save the tokenizer into")
    parser.add_argument("files", nargs="+", type=Path, help=".txt, .jsonl or .parquet files, folders or globs")
    parser.add_argument("--vocab-size", type=int, default=8192, help="ids including <|endoftext|> (at least 258)")


def run(args: argparse.Namespace) -> int:
    tokenizer = train_byte_level_bpe(args.files, args.vocab_size, args.out_dir, show_progress=True)
    print(f"saved a {len(tokenizer):,}-token tokenizer to {args.out_dir}")
    return 0
