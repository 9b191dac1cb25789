"""Text sources for data preparation: FineWeb-Edu from the Hub, or local .txt/.jsonl/.parquet files.

Every source is turned into an iterator of text batches (``TextBatch``: a list of str, or a pyarrow
string array straight from a jsonl/parquet reader, which avoids a round trip through Python
objects); everything after that (budgeting, tokenization, splitting, writing) is shared.

Local file rules:

* ``.txt``: UTF-8 text. ``txt_split="file"`` (default): one document per file;
  ``txt_split="paragraph"``: documents are separated by blank lines. Undecodable bytes are an error
  naming the file and byte offset.
* ``.jsonl``: one JSON object per line with a string field ``text_column``. ``.parquet``: a string
  column ``text_column``.
* A record whose text is null is skipped and counted (``meta.json`` ``skipped_null_text``; a warning
  names the first one). A missing field/column, a non-string value or invalid JSON is an error naming
  the file and line (jsonl) or column (parquet): they mean the wrong column or a broken file.
* Sources may be files, folders (searched recursively for the three suffixes) and glob patterns.
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ..utils import InputError, iter_jsonl

logger = logging.getLogger(__name__)

FINEWEB_EDU = "fineweb-edu"
FINEWEB_EDU_REPO = "HuggingFaceFW/fineweb-edu"
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")
TXT_SPLITS = ("file", "paragraph")
_GLOB_CHARS = re.compile(r"[*?\[]")
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")
_JSONL_BLOCK_BYTES = 16 << 20


TextBatch = list[str] | pa.Array


class SourceError(InputError):
    """Bad input data: the message names the file and record."""


@dataclass
class SkippedRecords:
    """Records without text (null), skipped rather than failing a long preparation."""

    null_text: int = 0
    first: str | None = None
    per_file: dict[str, int] = field(default_factory=dict)

    def add(self, path: Path | str, location: str, count: int = 1) -> None:
        if count <= 0:
            return
        if self.first is None:
            self.first = location
            logger.warning("skipping records with null text, first at %s (counted in meta.json)", location)
        self.null_text += count
        self.per_file[str(path)] = self.per_file.get(str(path), 0) + count


def is_fineweb_edu(sources: list[str]) -> bool:
    return len(sources) == 1 and sources[0] == FINEWEB_EDU


def resolve_local_files(sources: list[str]) -> list[Path]:
    """Expand files, folders and globs into a sorted, de-duplicated list of supported files."""
    if not sources:
        raise SourceError("no source given: pass 'fineweb-edu' or local files, folders or globs")
    files: list[Path] = []
    for source in sources:
        if source == FINEWEB_EDU:
            raise SourceError(f"{FINEWEB_EDU!r} cannot be combined with local sources")
        if _GLOB_CHARS.search(source):
            matches = sorted(Path(match) for match in glob.glob(source, recursive=True))
            found = [path for path in matches if path.is_file() and path.suffix in LOCAL_SUFFIXES]
            if not found:
                raise SourceError(f"glob {source!r} matches no {'/'.join(LOCAL_SUFFIXES)} file")
        else:
            path = Path(source)
            if path.is_dir():
                found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in LOCAL_SUFFIXES)
                if not found:
                    raise SourceError(f"folder {source!r} contains no {'/'.join(LOCAL_SUFFIXES)} file")
            elif path.is_file():
                if path.suffix not in LOCAL_SUFFIXES:
                    raise SourceError(f"{source!r}: unsupported file type (expected {', '.join(LOCAL_SUFFIXES)})")
                found = [path]
            else:
                raise SourceError(f"source {source!r} does not exist")
        files.extend(found)
    unique = list(dict.fromkeys(path.resolve() for path in files))
    return unique


def _read_txt(path: Path, txt_split: str) -> list[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceError(
            f"{path}: not valid UTF-8 at byte {error.start} ({error.reason}: {raw[error.start:error.end]!r})"
        ) from None
    if txt_split == "file":
        return [text]
    return [paragraph.strip("\n") for paragraph in _BLANK_LINES.split(text) if paragraph.strip()]


def _jsonl_records_checked(path: Path, text_column: str, skipped: SkippedRecords) -> Iterator[str]:
    """Line-by-line reader: slow, but names the exact line of any problem."""
    for location, record in iter_jsonl(path):
        if text_column not in record:
            raise SourceError(
                f"{location}: no {text_column!r} field (fields: {', '.join(map(str, record)) or 'none'}); "
                f"choose the text field with --text-column"
            )
        text = record[text_column]
        if text is None:
            skipped.add(path, location)
            continue
        if not isinstance(text, str):
            raise SourceError(f"{location}: field {text_column!r} is {type(text).__name__}, not a string")
        yield text


def _read_jsonl(path: Path, text_column: str, skipped: SkippedRecords, batch_size: int) -> Iterator[TextBatch]:
    """Fast path: pyarrow's multi-threaded streaming JSON reader. At the first irregularity (parse
    error, type mismatch, null or missing text) the rest of the file is re-read line by line, for a
    precise message or null count; texts already yielded are not repeated."""
    schema = pa.schema([pa.field(text_column, pa.string())])
    yielded = 0
    try:
        reader = pa_json.open_json(
            path,
            read_options=pa_json.ReadOptions(block_size=_JSONL_BLOCK_BYTES),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
        for record_batch in reader:
            column = record_batch.column(0)
            if column.null_count:
                raise pa.ArrowInvalid("null or missing text")
            column.validate(full=True)  # the JSON reader does not reject invalid UTF-8 by itself
            yield column
            yielded += len(column)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        checked = _jsonl_records_checked(path, text_column, skipped)
        for _ in range(yielded):  # valid, non-null texts come out of both readers in the same order
            next(checked)
        yield from _batched(checked, batch_size)


def _read_parquet(path: Path, text_column: str, skipped: SkippedRecords, batch_size: int) -> Iterator[TextBatch]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise SourceError(f"{path}: not a readable parquet file ({error})") from None
    schema = parquet.schema_arrow
    if text_column not in schema.names:
        raise SourceError(
            f"{path}: no column {text_column!r} (columns: {', '.join(schema.names)}); "
            f"choose the text column with --text-column"
        )
    column_type = schema.field(text_column).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise SourceError(f"{path}: column {text_column!r} has type {column_type}, not a string")
    row = 0
    for record_batch in parquet.iter_batches(batch_size=batch_size, columns=[text_column]):
        column = record_batch.column(0)
        if column.null_count:
            first_null = pc.index(pc.is_null(column), True).as_py()
            skipped.add(path, f"{path}: row {row + first_null}", column.null_count)
            column = column.drop_null()
        row += record_batch.num_rows
        yield column.cast(pa.string())


def _batched(items: Iterable[Any], batch_size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def local_text_batches(
    files: list[Path],
    text_column: str,
    txt_split: str,
    skipped: SkippedRecords,
    batch_size: int = 1000,
    as_arrow: bool = False,
) -> Iterator[TextBatch]:
    """Documents of the files in order, as lists of at most ``batch_size`` strings.

    ``as_arrow=True`` passes jsonl/parquet batches on as the readers' pyarrow string arrays (any
    length), which the preparation pipeline writes without converting them to Python objects.
    """
    if txt_split not in TXT_SPLITS:
        raise InputError(f"txt_split must be one of {TXT_SPLITS}, got {txt_split!r}")
    for batch in _file_batches(files, text_column, txt_split, skipped, batch_size):
        if isinstance(batch, pa.Array) and not as_arrow:
            yield from _batched(batch.to_pylist(), batch_size)
        else:
            yield batch


def iter_texts(sources: list[str], text_column: str = "text", txt_split: str = "file") -> Iterator[str]:
    """The documents of local files, folders and globs, one string at a time, by the rules above."""
    for batch in local_text_batches(resolve_local_files(sources), text_column, txt_split, SkippedRecords()):
        yield from batch


def _file_batches(
    files: list[Path], text_column: str, txt_split: str, skipped: SkippedRecords, batch_size: int
) -> Iterator[TextBatch]:
    txt_batch: list[str] = []
    for path in files:
        if path.suffix == ".txt":
            txt_batch.extend(_read_txt(path, txt_split))
            while len(txt_batch) >= batch_size:
                yield txt_batch[:batch_size]
                txt_batch = txt_batch[batch_size:]
            continue
        if txt_batch:
            yield txt_batch
            txt_batch = []
        if path.suffix == ".jsonl":
            yield from _read_jsonl(path, text_column, skipped, batch_size)
        else:
            yield from _read_parquet(path, text_column, skipped, batch_size)
    if txt_batch:
        yield txt_batch


def fineweb_edu_text_batches(
    subset: str, text_column: str, streaming: bool, skipped: SkippedRecords, batch_size: int = 1000
) -> Iterator[list[str]]:
    """FineWeb-Edu ``subset`` from the Hub (download, or stream with ``streaming=True``)."""
    dataset = datasets.load_dataset(FINEWEB_EDU_REPO, name=subset, split="train", streaming=streaming)
    if text_column not in (dataset.column_names or [text_column]):
        raise SourceError(f"{FINEWEB_EDU_REPO}/{subset}: no column {text_column!r} ({dataset.column_names})")
    dataset = dataset.select_columns([text_column])
    row = 0
    for batch in dataset.iter(batch_size=batch_size):
        texts = batch[text_column]
        kept = [text for text in texts if text is not None]
        skipped.add(f"{FINEWEB_EDU_REPO}/{subset}", f"{FINEWEB_EDU_REPO}/{subset} row {row}", len(texts) - len(kept))
        row += len(texts)
        yield kept
