"""Load HellaSwag examples from the Hub or from a local jsonl file in the original release format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HUB_DATASET = "Rowan/hellaswag"
HUB_SPLIT = "validation"

# Fields every example needs; `activity_label`, `ctx_a` and `ctx_b` are checked too because the
# lm-eval prompt style builds its context from them.
_TEXT_FIELDS = ("ctx", "ctx_a", "ctx_b", "activity_label")


def load_hellaswag(path: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """HellaSwag examples as dicts with `ctx`, `ctx_a`, `ctx_b`, `activity_label`, `endings`
    (list of str) and an int `label`; other fields of the source are kept.

    `path=None` loads the validation split of `Rowan/hellaswag` from the Hub through `datasets`
    (10,042 examples); otherwise `path` is a jsonl file in the original release's format, one
    example per line. `limit` keeps the first `limit` examples. A malformed example raises a
    ValueError naming its line (or row, for the Hub).
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    if path is None:
        return _load_from_hub(limit)
    return _load_jsonl(Path(path), limit)


def describe_source(path: str | Path | None) -> str:
    """A short name of where examples come from, for result files."""
    return f"hf://datasets/{HUB_DATASET}@{HUB_SPLIT}" if path is None else str(path)


def _load_from_hub(limit: int | None) -> list[dict[str, Any]]:
    import datasets

    split = HUB_SPLIT if limit is None else f"{HUB_SPLIT}[:{limit}]"
    rows = datasets.load_dataset(HUB_DATASET, split=split)
    return [validate_example(row, where=f"{HUB_DATASET} {HUB_SPLIT} row {i}") for i, row in enumerate(rows)]


def _load_jsonl(path: Path, limit: int | None) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"HellaSwag data file not found: {path}")
    examples: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if limit is not None and len(examples) >= limit:
                break
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            examples.append(validate_example(row, where=where))
    return examples


def validate_example(row: Any, *, where: str) -> dict[str, Any]:
    """Check one HellaSwag example and return a copy with an int `label`; `where` names it in errors."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [key for key in (*_TEXT_FIELDS, "endings", "label") if key not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    for key in _TEXT_FIELDS:
        if not isinstance(row[key], str):
            raise ValueError(f"{where}: field {key!r} must be a string, got {type(row[key]).__name__}")
    endings = row["endings"]
    if not _is_list_of_str(endings) or len(endings) < 2:
        raise ValueError(f"{where}: field 'endings' must be a list of at least 2 strings, got {endings!r}")
    if any(not ending.strip() for ending in endings):
        raise ValueError(f"{where}: an ending is empty")
    label = _parse_label(row["label"])
    if label is None or not 0 <= label < len(endings):
        raise ValueError(f"{where}: field 'label' must be an integer in [0, {len(endings)}), got {row['label']!r}")
    return {**row, "endings": list(endings), "label": label}


def _is_list_of_str(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _parse_label(value: Any) -> int | None:
    """The label as an int: the original release stores an int, the Hub copy a digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
