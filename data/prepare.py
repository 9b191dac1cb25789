"""Tokenize a text corpus into memory-mapped Arrow shards: ``OUT/{train,val,tokenizer}`` + ``meta.json``.

Pipeline (shared by every source): text batches -> Arrow text file (budgeted by ``max_docs`` /
``max_tokens``) -> ``Dataset.map(batched=True, num_proc=N)`` producing ``[EOT] + ids`` per
document -> validation = the first documents holding at least ``val_tokens`` tokens, train = the
rest -> ``save_to_disk(num_shards=...)``.

Crash safety: everything is written into a hidden sibling folder ``.OUT.incomplete-PID`` that is
renamed to ``OUT`` only after ``meta.json`` is written, so ``OUT`` either holds complete data or does
not exist. Folders left by killed runs are removed by the next run.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain, count
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, List, Value, concatenate_datasets
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..utils import InputError, write_json
from .meta import FORMAT, FORMAT_VERSION, META_FILE, TEXT_CONTENT, TOKENIZER_DIR, load_meta
from .sources import (
    FINEWEB_EDU,
    FINEWEB_EDU_REPO,
    SkippedRecords,
    SourceError,
    TextBatch,
    fineweb_edu_text_batches,
    is_fineweb_edu,
    local_text_batches,
    resolve_local_files,
)
from .tokenization import (
    DEFAULT_TOKENIZER,
    DocumentEncoder,
    build_document_encoder,
    load_tokenizer,
    tokenizer_fingerprint,
    tokenizer_name,
)

DEFAULT_VAL_TOKENS = 10_485_760  # 10 * 2**20, the validation size of modded-nanogpt and llm.c
DEFAULT_TOKENS_PER_SHARD = 100_000_000
MAP_BATCH_SIZE = 1000
PROBE_SAMPLE_CHARS = 64_000  # data sample also used to check the fast encoder and estimate chars/token
MIN_TEXT_BYTES_FOR_WORKERS = 4 << 20  # below this, starting a worker pool costs more than it saves
_INCOMPLETE = ".incomplete-"


class OutputExistsError(InputError, FileExistsError):
    """The output folder holds something other than the data these arguments would make."""


def package_version() -> str:
    try:
        return importlib.metadata.version("nanogpt2")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def say(verbose: bool, message: str) -> None:
    if verbose:
        tqdm.write(message, file=sys.stderr)


def _work_dir_prefix(output_dir: Path) -> str:
    return f".{output_dir.name}{_INCOMPLETE}"


def _remove_stale_work_dirs(output_dir: Path) -> None:
    """Delete work folders of earlier runs whose process is gone (killed or crashed)."""
    for candidate in output_dir.parent.glob(_work_dir_prefix(output_dir) + "*"):
        try:
            pid = int(candidate.name.rsplit("-", 1)[-1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def check_existing_output(output_dir: Path, recipe: dict[str, Any]) -> bool:
    """True when ``output_dir`` already holds data made with ``recipe``; raises when it holds anything else."""
    if not output_dir.exists():
        return False
    if not output_dir.is_dir():
        raise OutputExistsError(f"output {output_dir} exists and is not a folder")
    if (output_dir / META_FILE).exists():
        try:
            existing = load_meta(output_dir)
        except (OSError, ValueError) as error:
            raise OutputExistsError(
                f"output {output_dir} holds incomplete data ({error}); remove it to prepare again"
            ) from None
        if existing.get("recipe") == recipe:
            return True
        old = existing.get("recipe", {})
        changed = sorted(key for key in set(old) | set(recipe) if old.get(key) != recipe.get(key))
        raise OutputExistsError(
            f"output {output_dir} already holds data prepared with different arguments ({', '.join(changed)}); "
            f"choose another --output-dir or remove it"
        )
    if any(output_dir.iterdir()):
        raise OutputExistsError(f"output {output_dir} exists, is not empty and holds no prepared data ({META_FILE})")
    return False


@contextmanager
def atomic_output_dir(output_dir: Path, recipe: dict[str, Any]) -> Iterator[Path]:
    """A fresh work folder ``.OUT.incomplete-PID`` beside ``output_dir``, renamed to ``output_dir`` when the
    block ends (write ``meta.json`` last, inside it) and removed when the block raises or is interrupted."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_work_dirs(output_dir)
    work_dir = output_dir.parent / f"{_work_dir_prefix(output_dir)}{os.getpid()}"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    try:
        yield work_dir
        try:
            os.rename(work_dir, output_dir)
        except OSError:
            # Another run finished the same output first: keep it when it is identical.
            if not check_existing_output(output_dir, recipe):
                raise
            shutil.rmtree(work_dir, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise


def data_meta(
    *,
    content: str,
    started: float,
    sources: list[str],
    tokenizer: PreTrainedTokenizerBase,
    fingerprint: str,
    eot_id: int,
    dtype: str,
    splits: dict[str, dict[str, Any]],
    recipe: dict[str, Any],
    **details: Any,
) -> dict[str, Any]:
    """``meta.json`` of a complete prepared folder: the keys every reader needs, then the source's ``details``,
    then the recipe (what decides the output bytes)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "complete": True,
        "content": content,
        "package_version": package_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 3),
        "sources": sources,
        "tokenizer_name": tokenizer_name(tokenizer),
        "tokenizer_hash": fingerprint,
        "tokenizer_vocab_size": len(tokenizer),
        "eot_id": eot_id,
        "dtype": dtype,
        "documents": sum(split["documents"] for split in splits.values()),
        "tokens": sum(split["tokens"] for split in splits.values()),
        "splits": splits,
        **details,
        "recipe": recipe,
    }


def _text_file_from_batches(
    batches: Iterator[TextBatch], path: Path, max_docs: int | None, max_chars: int | None, progress: tqdm
) -> tuple[int, pa.Array | None]:
    """Write texts to an Arrow stream file until ``max_docs`` documents or ``max_chars`` characters.

    Returns (documents written, the unwritten rest of the last batch or None) so that the next
    round continues exactly where this one stopped.
    """
    docs = chars = 0
    leftover = None
    schema = pa.schema([pa.field("text", pa.string())])
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            texts = batch if isinstance(batch, pa.Array) else pa.array(batch, type=pa.string())
            take = len(texts) if max_docs is None else min(len(texts), max_docs - docs)
            if max_chars is not None and take:
                lengths = pc.utf8_length(texts.slice(0, take)).to_numpy(zero_copy_only=False).astype(np.int64)
                over = np.flatnonzero(np.cumsum(lengths) + chars >= max_chars)
                take = int(over[0]) + 1 if over.size else take
                chars += int(lengths[:take].sum())
            if take:
                writer.write_batch(pa.record_batch([texts.slice(0, take)], schema=schema))
                docs += take
                progress.update(take)
            if take < len(texts):
                leftover = texts.slice(take)
                break
            if max_docs is not None and docs >= max_docs:
                break
    return docs, leftover


def _tokenize_file(text_path: Path, encoder: DocumentEncoder, num_proc: int) -> Dataset:
    """(n_docs,) texts -> (n_docs,) ``input_ids`` lists, written next to the text file."""
    texts = Dataset.from_file(str(text_path))
    features = Features({"input_ids": List(Value(encoder.dtype))})
    tokens = texts.with_format("arrow").map(
        encoder,
        batched=True,
        batch_size=MAP_BATCH_SIZE,
        num_proc=num_proc if num_proc > 1 and text_path.stat().st_size >= MIN_TEXT_BYTES_FOR_WORKERS else None,
        remove_columns=texts.column_names,
        features=features,
        cache_file_name=str(text_path.with_suffix(".tokens.arrow")),
        new_fingerprint=uuid.uuid4().hex,  # fresh work folder each run: never reuse, never hash the encoder
        load_from_cache_file=False,
        desc="Tokenizing",
        disable_nullable=True,
    )
    return tokens.with_format(None)


def document_lengths(tokens: Dataset) -> np.ndarray:
    """(n_docs,) int64 token counts, read from the Arrow list offsets (no token is touched)."""
    column = tokens.data.column("input_ids")
    if column.num_chunks == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([pc.list_value_length(chunk).to_numpy() for chunk in column.chunks]).astype(np.int64)


def _shard_summary(split_dir: Path) -> list[dict[str, Any]]:
    shards = []
    for path in sorted(split_dir.glob("data-*.arrow")):
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_stream(source).read_all()
            column = table.column("input_ids")
            tokens = sum(int(pc.sum(pc.list_value_length(chunk)).as_py() or 0) for chunk in column.chunks)
        shards.append({"file": path.name, "documents": table.num_rows, "tokens": tokens})
    return shards


def save_split(tokens: Dataset, split_dir: Path, tokens_per_shard: int, num_proc: int) -> dict[str, Any]:
    lengths = document_lengths(tokens)
    total = int(lengths.sum())
    num_shards = max(1, min(len(tokens), math.ceil(total / tokens_per_shard)))
    writers = min(num_proc, num_shards)  # datasets starts a spawned pool for any num_proc, even 1
    tokens.save_to_disk(str(split_dir), num_shards=num_shards, num_proc=writers if writers > 1 else None)
    shards = _shard_summary(split_dir)
    if sum(shard["tokens"] for shard in shards) != total:
        raise RuntimeError(f"token count mismatch after writing {split_dir}")
    return {"documents": len(tokens), "tokens": total, "shards": shards}


def _peek_probe_texts(
    batches: Iterator[TextBatch], max_docs: int | None
) -> tuple[list[str], Iterator[TextBatch]]:
    """The first ~PROBE_SAMPLE_CHARS characters of documents, and the batches with nothing consumed.

    The sample joins the encoder equality check and calibrates characters per token.
    """
    peeked: list[TextBatch] = []
    probe: list[str] = []
    probe_chars = 0
    for batch in batches:
        peeked.append(batch)
        head = batch[:1000]
        for text in head.to_pylist() if isinstance(head, pa.Array) else head:
            probe.append(text[:PROBE_SAMPLE_CHARS])
            probe_chars += len(probe[-1])
            if probe_chars >= PROBE_SAMPLE_CHARS or len(probe) == max_docs:
                break
        if probe_chars >= PROBE_SAMPLE_CHARS or len(probe) == max_docs:
            break
    return probe, chain(peeked, batches)


def _tokenize_in_rounds(
    batches: Iterator[TextBatch],
    encoder: DocumentEncoder,
    staging: Path,
    num_proc: int,
    max_docs: int | None,
    max_tokens: int | None,
    chars_per_token: float,
    verbose: bool,
) -> Dataset | None:
    """All documents within the limits, tokenized (None when there are none).

    Each round reads a character budget estimated to hold the remaining ``max_tokens`` (10% margin)
    and tokenizes it; another round runs only when that was not enough. Without ``max_tokens``
    one round reads everything.
    """
    rounds: list[Dataset] = []
    docs_read = tokens_read = 0
    with tqdm(desc="Reading documents", unit=" docs", disable=not verbose) as progress:
        for round_index in count():
            max_chars = None
            if max_tokens is not None:
                max_chars = int((max_tokens - tokens_read) * chars_per_token * 1.1) + 10_000
            text_path = staging / f"text-{round_index:05d}.arrow"
            docs, leftover = _text_file_from_batches(
                batches, text_path, None if max_docs is None else max_docs - docs_read, max_chars, progress
            )
            if docs == 0:
                break
            tokens = _tokenize_file(text_path, encoder, num_proc)
            rounds.append(tokens)
            docs_read += docs
            tokens_read += int(document_lengths(tokens).sum())
            batches = chain([leftover], batches) if leftover is not None else batches
            if max_tokens is None or tokens_read >= max_tokens or (max_docs is not None and docs_read >= max_docs):
                break
    if not rounds:
        return None
    return concatenate_datasets(rounds) if len(rounds) > 1 else rounds[0]


def _split_points(tokens: Dataset, val_tokens: int, max_tokens: int | None) -> tuple[int, int]:
    """(validation documents, documents kept): validation = the shortest prefix of documents holding
    >= val_tokens tokens; kept = the longest prefix holding <= max_tokens tokens."""
    cumulative = np.cumsum(document_lengths(tokens))
    num_docs = len(cumulative)
    if max_tokens is not None:
        num_docs = int(np.searchsorted(cumulative, max_tokens, side="right"))
    val_docs = 0 if val_tokens == 0 else int(np.searchsorted(cumulative, val_tokens, side="left")) + 1
    if val_docs >= num_docs:
        available = int(cumulative[num_docs - 1]) if num_docs else 0
        raise SourceError(
            f"the sources hold {available} tokens in {num_docs} documents (within the limits): not enough for "
            f"a {val_tokens}-token validation split plus training data; lower --val-tokens or add text"
        )
    return val_docs, num_docs


def _validate_arguments(val_tokens: int, max_tokens: int | None, max_docs: int | None, num_proc: int) -> None:
    if val_tokens < 0:
        raise InputError(f"val_tokens must be >= 0, got {val_tokens}")
    if max_docs is not None and max_docs < 1:
        raise InputError(f"max_docs must be >= 1, got {max_docs}")
    if max_tokens is not None and max_tokens <= val_tokens:
        raise InputError(
            f"max_tokens={max_tokens} leaves no training data after the {val_tokens}-token validation split "
            f"(max_tokens counts both splits); raise max_tokens or lower val_tokens"
        )
    if num_proc < 1:
        raise InputError(f"num_proc must be >= 1, got {num_proc}")


def prepare_data(
    sources: list[str] | str,
    output_dir: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase = DEFAULT_TOKENIZER,
    subset: str = "sample-10BT",
    text_column: str = "text",
    val_tokens: int = DEFAULT_VAL_TOKENS,
    max_tokens: int | None = None,
    max_docs: int | None = None,
    num_proc: int = 1,
    streaming: bool = False,
    txt_split: str = "file",
    tokens_per_shard: int = DEFAULT_TOKENS_PER_SHARD,
    verbose: bool = True,
) -> Path:
    """Tokenize ``sources`` into ``output_dir`` (see the module docstring) and return its path.

    ``sources``: ``"fineweb-edu"`` (``HuggingFaceFW/fineweb-edu``, config ``subset``; downloaded, or
    streamed with ``streaming=True``) or local ``.txt``/``.jsonl``/``.parquet`` files, folders, globs.
    ``max_tokens`` caps the tokens of both splits together and ``max_docs`` the documents read; both
    keep whole documents. Re-running with the same arguments over complete output returns at once;
    different arguments over existing output raise ``OutputExistsError`` (a ``FileExistsError``).
    """
    sources = [sources] if isinstance(sources, str | os.PathLike) else [os.fspath(s) for s in sources]
    _validate_arguments(val_tokens, max_tokens, max_docs, num_proc)
    output_dir = Path(output_dir).absolute()
    hub = is_fineweb_edu(sources)
    files = [] if hub else resolve_local_files(sources)
    tokenizer = load_tokenizer(tokenizer)
    fingerprint = tokenizer_fingerprint(tokenizer)
    source_recipe: dict[str, Any] = (
        {"source": FINEWEB_EDU, "repo": FINEWEB_EDU_REPO, "subset": subset}
        if hub
        else {"source": "local", "files": [str(path) for path in files], "txt_split": txt_split}
    )
    # Everything that decides the output bytes (not num_proc/streaming/verbosity).
    recipe = {
        **source_recipe,
        "text_column": text_column,
        "tokenizer_hash": fingerprint,
        "val_tokens": val_tokens,
        "max_tokens": max_tokens,
        "max_docs": max_docs,
        "tokens_per_shard": tokens_per_shard,
        "format_version": FORMAT_VERSION,
    }
    if check_existing_output(output_dir, recipe):
        say(verbose, f"{output_dir} already holds complete data prepared with these arguments; nothing to do")
        return output_dir

    if num_proc > 1:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one Rust thread per map worker
    started = time.time()
    with atomic_output_dir(output_dir, recipe) as work_dir:
        staging = work_dir / "staging"
        staging.mkdir()
        skipped = SkippedRecords()
        batches = (
            fineweb_edu_text_batches(subset, text_column, streaming, skipped)
            if hub
            else local_text_batches(files, text_column, txt_split, skipped, as_arrow=True)
        )
        probe, batches = _peek_probe_texts(batches, max_docs)
        if not probe:
            raise SourceError(f"the sources contain no documents: {', '.join(sources)}")
        encoder, encoder_description = build_document_encoder(
            tokenizer, text_column="text", sample_texts=probe, fingerprint=fingerprint
        )
        say(verbose, f"Tokenizer {tokenizer_name(tokenizer) or '(in memory)'}: encoding with {encoder_description}")
        chars_per_token = max(sum(map(len, probe)), 1) / sum(len(ids) + 1 for ids in encoder.encode_texts(probe))
        all_tokens = _tokenize_in_rounds(
            batches, encoder, staging, num_proc, max_docs, max_tokens, chars_per_token, verbose
        )
        if all_tokens is None:
            raise SourceError(f"the sources contain no documents: {', '.join(sources)}")
        val_docs, num_docs = _split_points(all_tokens, val_tokens, max_tokens)
        splits = {
            "val": save_split(all_tokens.select(range(val_docs)), work_dir / "val", tokens_per_shard, num_proc),
            "train": save_split(
                all_tokens.select(range(val_docs, num_docs)), work_dir / "train", tokens_per_shard, num_proc
            ),
        }
        tokenizer.save_pretrained(str(work_dir / TOKENIZER_DIR))
        del all_tokens
        shutil.rmtree(staging)
        meta = data_meta(
            content=TEXT_CONTENT, started=started, sources=sources, tokenizer=tokenizer, fingerprint=fingerprint,
            eot_id=encoder.eot_id, dtype=encoder.dtype, splits=splits, recipe=recipe,
            source=source_recipe["source"], subset=subset if hub else None, text_column=text_column,
            encoder=encoder.path, skipped_null_text=skipped.null_text, skipped_null_text_first=skipped.first,
        )
        write_json(work_dir / META_FILE, meta)
    say(
        verbose,
        f"Wrote {output_dir}: train {splits['train']['tokens']:,} tokens / {splits['train']['documents']:,} docs, "
        f"val {splits['val']['tokens']:,} tokens / {splits['val']['documents']:,} docs ({time.time() - started:.1f} s)",
    )
    return output_dir
