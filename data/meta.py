"""``meta.json`` of a prepared data folder: its fields, validated reading, the saved tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..utils import InputError
from .tokenization import tokenizer_fingerprint

META_FILE = "meta.json"
TOKENIZER_DIR = "tokenizer"
SPLITS = ("train", "val")
FORMAT = "nanogpt2-tokens"
FORMAT_VERSION = 1
TEXT_CONTENT = "text"  # meta.json "content": documents for pretraining (the default when absent)
CHAT_CONTENT = "chat"  # conversations, with an assistant_masks column beside input_ids
REQUIRED_KEYS = ("format", "format_version", "complete", "tokenizer_hash", "eot_id", "dtype", "splits")


def load_meta(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``meta.json`` of a prepared data folder.

    Raises ``InputError`` naming the folder when it is not complete prepared data (no such folder; no
    ``meta.json``: preparation interrupted or never run; an unreadable or partial file).
    """
    data_dir = Path(data_dir)
    path = data_dir / META_FILE
    if not data_dir.is_dir():
        raise InputError(f"prepared data folder {data_dir} does not exist; make it with `nanogpt2 prepare`")
    if not path.is_file():
        raise InputError(
            f"{data_dir} is not a prepared data folder: {META_FILE} is missing (preparation was interrupted, "
            f"is still running, or never ran); prepare it with `nanogpt2 prepare`"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is incomplete or corrupt ({error}); prepare the data again") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path} is not a JSON object; prepare the data again")
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing or meta.get("complete") is not True or meta.get("format") != FORMAT:
        raise InputError(f"{path} is incomplete (missing {missing or 'complete=true'}); prepare the data again")
    if meta["format_version"] != FORMAT_VERSION:
        raise InputError(f"{path} has format version {meta['format_version']}, this package reads {FORMAT_VERSION}")
    for split in SPLITS:
        if split not in meta["splits"] or not (data_dir / split).is_dir():
            raise InputError(f"{data_dir} has no complete {split!r} split; prepare the data again")
    return meta


def is_chat_data(meta: dict[str, Any]) -> bool:
    """True when a prepared folder holds conversations (``assistant_masks`` beside ``input_ids``)."""
    return meta.get("content", TEXT_CONTENT) == CHAT_CONTENT


def load_data_tokenizer(data_dir: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the data (``data_dir/tokenizer``), checked against meta.json's hash."""
    meta = load_meta(data_dir)
    tokenizer_dir = Path(data_dir) / TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise InputError(f"{data_dir} has no saved tokenizer folder {TOKENIZER_DIR}/; prepare the data again")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if tokenizer_fingerprint(tokenizer) != meta["tokenizer_hash"]:
        raise InputError(f"{tokenizer_dir} does not match the tokenizer_hash in {Path(data_dir) / META_FILE}")
    return tokenizer
