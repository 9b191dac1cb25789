"""Append-only JSON-lines logs (`metrics.jsonl`, `samples.jsonl`) that survive kills and resumes."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def _json_safe(value: Any) -> Any:
    # JSON has no NaN/inf: write them as null rather than producing an unreadable line.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlLog:
    """One JSON object per line, flushed after every record so a reader (or a crash) sees whole lines."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def truncate_after(self, step: int) -> int:
        """Drop records with `step` > `step` and any torn last line; return how many records remain.

        Called when a run (re)starts from `step`: the steps after it will be trained, and logged, again.
        Rewritten to a temporary file and renamed, so a kill during this leaves either version whole.
        """
        if not self.path.exists():
            return 0
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)
        return len(kept)

    def write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({k: _json_safe(v) for k, v in record.items()})
        with self.path.open("a") as f:
            f.write(line + "\n")
            f.flush()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All whole records of a JSON-lines file ([] when it does not exist yet)."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
