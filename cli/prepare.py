"""Tokenize text (pretraining) or conversations (fine-tuning) into memory-mapped Arrow shards.

    nanogpt2 prepare --source fineweb-edu --output-dir prepared/fineweb-edu-10B [--subset sample-10BT]
        [--streaming] [--tokenizer openai-community/gpt2] [--num-proc 8]
    nanogpt2 prepare --source corpus/*.jsonl books/ notes.txt --output-dir prepared/local
        [--text-column text] [--txt-split file|paragraph] [--val-tokens 10485760]
        [--max-tokens N] [--max-docs N] [--tokens-per-shard 100000000]
    nanogpt2 prepare --format chat --source OpenAssistant/oasst1 --threads best --lang en \\
        --output-dir prepared/oasst1-en
    nanogpt2 prepare --format chat --source chats.jsonl --output-dir prepared/chats
        [--max-length 1024] [--val-fraction 0.05] [--train-split train] [--val-split validation]

`--format text` (the default): documents, for pretraining. `--format chat`: conversations (a
`messages` column of {role, content}, or OpenAssistant's oasst1/oasst2 message table), with the chat
template and an `assistant_masks` column for supervised fine-tuning; what is dropped and why is counted
in meta.json (rules: `nanogpt2.data.chat`, `nanogpt2.data.oasst`).
Writes OUT/train/, OUT/val/ (`datasets.load_from_disk`), OUT/tokenizer/ and OUT/meta.json.
Re-running with the same arguments over complete output says so and exits; different arguments
into an existing folder is an error. Bad input exits with status 2 and a message naming the file.
"""

from __future__ import annotations

import argparse
import os

from ..data import (
    DEFAULT_TOKENIZER,
    DEFAULT_TOKENS_PER_SHARD,
    DEFAULT_VAL_TOKENS,
    THREAD_MODES,
    TXT_SPLITS,
    prepare_chat_data,
    prepare_data,
)
from ..data.chat import DEFAULT_MAX_LENGTH, DEFAULT_VAL_FRACTION
from ..utils import InputError

FORMATS = ("text", "chat")
# Flags of one format only (default None: unset), by destination name.
TEXT_ONLY = ("subset", "streaming", "text_column", "txt_split", "val_tokens", "max_tokens", "max_docs")
CHAT_ONLY = ("threads", "lang", "max_length", "val_fraction", "train_split", "val_split")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text: documents for pretraining; chat: conversations for fine-tuning")
    parser.add_argument("--source", nargs="+", required=True,
                        help="text: 'fineweb-edu' (HuggingFaceFW/fineweb-edu) or local .txt/.jsonl/.parquet files, "
                             "folders and globs; chat: a Hub dataset id or local .jsonl/.parquet files")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help="Hub id or local tokenizer folder")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="tokenizer processes")
    parser.add_argument("--tokens-per-shard", type=int, default=DEFAULT_TOKENS_PER_SHARD)
    text = parser.add_argument_group("--format text")
    text.add_argument("--subset", help="FineWeb-Edu config, e.g. sample-10BT (default), sample-100BT")
    text.add_argument("--streaming", action="store_const", const=True,
                      help="stream FineWeb-Edu instead of downloading it")
    text.add_argument("--text-column", help="text field of .jsonl / column of .parquet (default: text)")
    text.add_argument("--txt-split", choices=TXT_SPLITS,
                      help=".txt documents: one per file (default), or separated by blank lines (paragraph)")
    text.add_argument("--val-tokens", type=int,
                      help=f"validation split: the first documents holding at least this many tokens "
                           f"(default {DEFAULT_VAL_TOKENS})")
    text.add_argument("--max-tokens", type=int, help="cap on the tokens of both splits together")
    text.add_argument("--max-docs", type=int, help="cap on the documents read")
    chat = parser.add_argument_group("--format chat")
    chat.add_argument("--threads", choices=THREAD_MODES,
                      help="OpenAssistant trees: the best-ranked path of each (best, default) or every path (all)")
    chat.add_argument("--lang", help="OpenAssistant: keep trees whose first prompt has this language code, e.g. en")
    chat.add_argument("--max-length", type=int,
                      help=f"drop (and count) conversations of more tokens (default {DEFAULT_MAX_LENGTH})")
    chat.add_argument("--val-fraction", type=float,
                      help=f"held-out share when the source has no validation split (default {DEFAULT_VAL_FRACTION})")
    chat.add_argument("--train-split", help="Hub dataset split to train on (default: train)")
    chat.add_argument("--val-split", help="Hub dataset split to validate on, when it exists (default: validation)")


def run(args: argparse.Namespace) -> int:
    own, other = (CHAT_ONLY, TEXT_ONLY) if args.format == "chat" else (TEXT_ONLY, CHAT_ONLY)
    stray = [name for name in other if getattr(args, name) is not None]
    if stray:
        flags = ", ".join("--" + name.replace("_", "-") for name in stray)
        raise InputError(f"{flags} do not apply to --format {args.format}")
    options = {name: getattr(args, name) for name in own if getattr(args, name) is not None}
    prepare = prepare_chat_data if args.format == "chat" else prepare_data
    prepare(args.source, args.output_dir, tokenizer=args.tokenizer, num_proc=args.num_proc,
            tokens_per_shard=args.tokens_per_shard, **options)
    return 0
