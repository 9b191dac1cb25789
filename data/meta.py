"""``meta.json`` of a prepared data folder: atomic writing, validated reading, the saved tokenizer."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .tokenization import tokenizer_fingerprint

META_FILE = "meta.json"
TOKENIZER_DIR = "tokenizer"
SPLITS = ("train", "val")
FORMAT = "nanogpt2-tokens"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "complete", "tokenizer_hash", "eot_id", "dtype", "splits")


def write_json_atomic(path: Path, content: dict[str, Any]) -> None:
    """Write JSON to a temporary file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(content, file, indent=2, ensure_ascii=False)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; data folders are shared read-only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_meta(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``meta.json`` of a prepared data folder.

    Raises ``FileNotFoundError``/``ValueError`` naming the folder when it is not complete prepared
    data (no ``meta.json``: preparation interrupted or never run; unreadable or partial file).
    """
    data_dir = Path(data_dir)
    path = data_dir / META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{data_dir} is not a prepared data folder: {META_FILE} is missing (preparation was interrupted, "
            f"is still running, or never ran); prepare it with scripts/prepare_data.py"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is incomplete or corrupt ({error}); prepare the data again") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a JSON object; prepare the data again")
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing or meta.get("complete") is not True or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is incomplete (missing {missing or 'complete=true'}); prepare the data again")
    if meta["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {meta['format_version']}, this package reads {FORMAT_VERSION}")
    for split in SPLITS:
        if split not in meta["splits"] or not (data_dir / split).is_dir():
            raise ValueError(f"{data_dir} has no complete {split!r} split; prepare the data again")
    return meta


def load_data_tokenizer(data_dir: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the data (``data_dir/tokenizer``), checked against meta.json's hash."""
    meta = load_meta(data_dir)
    tokenizer_dir = Path(data_dir) / TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} has no saved tokenizer folder {TOKENIZER_DIR}/")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if tokenizer_fingerprint(tokenizer) != meta["tokenizer_hash"]:
        raise ValueError(f"{tokenizer_dir} does not match the tokenizer_hash in {Path(data_dir) / META_FILE}")
    return tokenizer
