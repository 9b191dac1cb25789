"""`metrics.jsonl` and `samples.jsonl` of a run as an Accelerate tracker, beside wandb.

The loop logs every record once, with `accelerator.log` (and each evaluation's sample texts with
`log_table`); Accelerate hands it to every tracker: this one, and wandb when `logging.tracker=wandb`.
Records are appended one JSON object per line and flushed, so a reader or a crash sees whole lines.
A run (re)started from step S will train and log steps after S again: `start` first drops the old
records of those steps, and any line torn by a kill.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker

from ..utils import atomic_write, read_jsonl

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"


def _finite_or_none(value: Any) -> Any:
    # JSON has no NaN/inf: write them as null rather than an unreadable line.
    return None if isinstance(value, float) and not math.isfinite(value) else value


class JsonlTracker(GeneralTracker):
    """Appends `{"step": step, **values}` to `OUT/metrics.jsonl` and sample rows to `OUT/samples.jsonl`."""

    name = "jsonl"
    requires_logging_directory = False

    def __init__(self, out_dir: str | Path, resume_step: int) -> None:
        super().__init__()
        self.metrics_path = Path(out_dir) / METRICS_FILE
        self.samples_path = Path(out_dir) / SAMPLES_FILE
        self.resume_step = resume_step

    @property
    def tracker(self) -> Path:
        return self.metrics_path

    def start(self) -> None:
        for path in (self.metrics_path, self.samples_path):
            if path.exists():
                kept = [r for r in read_jsonl(path) if r.get("step", 0) <= self.resume_step]
                with atomic_write(path) as file:
                    file.writelines(json.dumps(r) + "\n" for r in kept)

    def store_init_configuration(self, values: dict) -> None:
        """The config is saved as `OUT/config.yaml` by the loop; nothing to add here."""

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        self._append(self.metrics_path, [{"step": step, **values}])

    def log_table(self, table_name: str, columns: list[str], data: list[list[Any]], step: int | None = None,
                  **kwargs: Any) -> None:
        self._append(self.samples_path, [{"step": step, **dict(zip(columns, row, strict=True))} for row in data])

    @staticmethod
    def _append(path: Path, records: list[dict[str, Any]]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as file:
            file.writelines(json.dumps({k: _finite_or_none(v) for k, v in r.items()}) + "\n" for r in records)
            file.flush()
