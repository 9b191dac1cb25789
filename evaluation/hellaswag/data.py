"""Load HellaSwag examples from the Hub or from a local jsonl file in the original release format."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import datasets

from ...utils import InputError, iter_jsonl

HUB_DATASET = "Rowan/hellaswag"
HUB_SPLIT = "validation"

# `activity_label`, `ctx_a` and `ctx_b` are checked too: the lm-eval prompt style builds its context from them.
TEXT_FIELDS = ("ctx", "ctx_a", "ctx_b", "activity_label")


def load_hellaswag(path: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """HellaSwag examples as dicts with `ctx`, `ctx_a`, `ctx_b`, `activity_label`, `endings` (list of str)
    and an int `label`; other fields of the source are kept.

    `path=None` loads the validation split of `Rowan/hellaswag` from the Hub (10,042 examples); otherwise
    `path` is a jsonl file in the original release's format, one example per line. `limit` keeps the
    first `limit` examples. A missing file or a malformed example raises `InputError` naming the file and
    line (or the Hub row).
    """
    if limit is not None and limit < 0:
        raise InputError(f"HellaSwag limit must be >= 0 or None, got {limit}")
    if path is None:
        split = HUB_SPLIT if limit is None else f"{HUB_SPLIT}[:{limit}]"
        try:
            rows = datasets.load_dataset(HUB_DATASET, split=split)
        except OSError as error:  # offline, or the Hub unreachable
            raise InputError(f"cannot load {HUB_DATASET} ({HUB_SPLIT}) from the Hub: {error}; "
                             "give a local HellaSwag jsonl file instead") from None
        return [validate_example(row, where=f"{HUB_DATASET} {HUB_SPLIT} row {i}") for i, row in enumerate(rows)]

    path = Path(path)
    if not path.is_file():
        raise InputError(f"HellaSwag file not found: {path}")
    rows = itertools.islice(iter_jsonl(path), limit)
    return [validate_example(row, where=where) for where, row in rows]


def describe_source(path: str | Path | None) -> str:
    """Where examples come from, for result files."""
    return f"hf://datasets/{HUB_DATASET}@{HUB_SPLIT}" if path is None else str(path)


def validate_example(row: Any, *, where: str) -> dict[str, Any]:
    """Check one HellaSwag example and return a copy with an int `label`; `where` names it in errors."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [key for key in (*TEXT_FIELDS, "endings", "label") if key not in row]
    if missing:
        raise InputError(f"{where}: missing field(s) {missing}")
    for key in TEXT_FIELDS:
        if not isinstance(row[key], str):
            raise InputError(f"{where}: field {key!r} must be a string, got {type(row[key]).__name__}")
    endings = row["endings"]
    if not isinstance(endings, list) or len(endings) < 2 or not all(isinstance(e, str) for e in endings):
        raise InputError(f"{where}: field 'endings' must be a list of at least 2 strings, got {endings!r}")
    if any(not ending.strip() for ending in endings):
        raise InputError(f"{where}: an ending is empty")
    label = row["label"]
    # The original release stores an int, the Hub copy a digit string.
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if type(label) is not int or not 0 <= label < len(endings):
        raise InputError(f"{where}: field 'label' must be an integer in [0, {len(endings)}), got {row['label']!r}")
    return {**row, "endings": list(endings), "label": label}
