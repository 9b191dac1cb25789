"""Conversations -> ``input_ids`` + ``assistant_masks`` in the prepared-data folder contract.

Sources: the Hugging Face conversational format (a ``messages`` column of ``{role, content}``,
roles ``system`` / ``user`` / ``assistant``), or OpenAssistant's flat message table (oasst1 /
oasst2, turned into threads by ``data.oasst``), told apart by their columns; from a Hub dataset id
(``datasets.load_dataset``) or local ``.jsonl`` / ``.parquet`` files, folders and globs.

Tokenization is ``tokenizer.apply_chat_template(..., return_assistant_tokens_mask=True)`` with the
template of ``data.chat_template`` (so the masks are exactly transformers'): one row per
conversation, ``input_ids`` (uint16 when the ids fit) and ``assistant_masks`` (uint8, 1 on the
assistant's content tokens and their ``<|end|>``). The rows start with ``<|endoftext|>``, so the
``TokenLoader`` streams them like pretraining documents, with the loss only where the mask is 1.

Splits: the Hub dataset's validation split (``val_split``) when it has one; otherwise a held-out
share ``val_fraction`` chosen by a hash of the conversation's key (OASST: its tree, so threads of a
tree never straddle splits; else its messages), at least one conversation.

Bad input. Errors (``InputError`` naming the file and row, exit 2): no ``messages`` column (the
message names the columns there are), ``messages`` not a list of ``{role, content}`` objects with
string values, an unknown role (another convention, e.g. ShareGPT's ``human``/``gpt``: dropping it
would silently lose most of the data), OASST rows as in ``data.oasst``. Dropped and counted per split
in ``meta.json`` (``dropped``; the first location of each reason in ``dropped_first``), since real
datasets have a few of them:

* ``empty_message``: a message whose content is empty or only whitespace (or null);
* ``roles_not_alternating``: after an optional leading system message, roles must go user,
  assistant, user, ...;
* ``not_ending_with_assistant``: no assistant message last (nothing to learn from the last turn);
* ``chat_marker_in_content``: a special token's text (``<|user|>``, ``<|end|>``, ``<|endoftext|>``,
  ...) inside a message, which the tokenizer would turn into the special token itself;
* ``too_long``: more than ``max_length`` tokens (default 1024, GPT-2's context);
* OASST only: ``unanswered`` and ``other_language`` threads, and ``messages_excluded`` (see ``data.oasst``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.parquet as pq
from datasets import Dataset, Features, List, Value
from transformers import PreTrainedTokenizerBase

from ..utils import InputError, iter_jsonl, write_json
from .chat_template import CHAT_TEMPLATE, ROLES, add_chat_template
from .meta import CHAT_CONTENT, FORMAT_VERSION, META_FILE, TOKENIZER_DIR
from .oasst import MESSAGE_EXCLUSIONS, THREAD_DROPS, THREAD_MODES, is_oasst_table, oasst_threads
from .prepare import (
    DEFAULT_TOKENS_PER_SHARD,
    atomic_output_dir,
    check_existing_output,
    data_meta,
    document_lengths,
    save_split,
    say,
)
from .sources import SourceError, resolve_local_files
from .tokenization import DEFAULT_TOKENIZER, load_tokenizer, token_dtype, tokenizer_fingerprint

DEFAULT_MAX_LENGTH = 1024  # GPT-2's context
DEFAULT_VAL_FRACTION = 0.05
CHAT_SUFFIXES = (".jsonl", ".parquet")
CONVERSATION_DROPS = (
    "empty_message", "roles_not_alternating", "not_ending_with_assistant", "chat_marker_in_content", "too_long",
)
MESSAGES_COLUMN = "messages"
MAP_BATCH_SIZE = 1000
MIN_CONVERSATIONS_FOR_WORKERS = 20_000  # below this, starting a worker pool costs more than it saves
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass
class Conversation:
    messages: list[dict[str, str]]  # {role, content}
    key: str  # what the held-out split hashes: the OASST tree, else the messages
    location: str  # file:row where it starts
    split: str | None  # "train" / "val" from the source's own splits, None: decided by the hash of key


@dataclass
class _Table:
    """Rows of one source: a Hub split or a local file."""

    name: str
    split: str | None
    columns: list[str]
    rows: Iterator[tuple[str, dict[str, Any]]]  # (location, row)


@dataclass
class DropTally:
    """What was left out, by (key, fixed split or None, reason), resolved to train/val at the end."""

    dropped: Counter[tuple[str, str | None, str]]
    excluded: Counter[tuple[str, str | None, str]]
    first: dict[str, str]  # reason -> where it first happened (a file:row)

    def drop(self, conversation: Conversation, reason: str) -> None:
        self.dropped[conversation.key, conversation.split, reason] += 1
        self.first.setdefault(reason, conversation.location)


# ----------------------------------------------------------------------------- reading
def _is_hub_id(sources: list[str]) -> bool:
    return len(sources) == 1 and not Path(sources[0]).exists() and bool(_HUB_ID.match(sources[0]))


def _hub_tables(repo: str, train_split: str, val_split: str) -> list[_Table]:
    try:
        splits = datasets.load_dataset(repo)
    except (OSError, ValueError, ConnectionError) as error:
        raise InputError(f"cannot load the Hub dataset {repo!r}: {str(error).splitlines()[0]}") from None
    if train_split not in splits:
        raise InputError(f"{repo} has no split {train_split!r} (splits: {', '.join(splits)}); choose --train-split")
    chosen = {train_split: "train"} | ({val_split: "val"} if val_split in splits else {})
    return [
        _Table(f"{repo} {name}", fixed if val_split in splits else None, splits[name].column_names,
               ((f"{repo} {name} row {i}", row) for i, row in enumerate(splits[name])))
        for name, fixed in chosen.items()
    ]


def _file_table(path: Path) -> _Table:
    if path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as error:
            raise SourceError(f"{path}: not a readable parquet file ({error})") from None
        rows = ((f"{path}: row {i}", row) for i, row in enumerate(table.to_pylist()))
        return _Table(str(path), None, table.column_names, rows)
    records = iter_jsonl(path)
    first = next(records, None)
    if first is None:
        return _Table(str(path), None, [MESSAGES_COLUMN], iter(()))
    return _Table(str(path), None, list(first[1]), chain([first], records))


def _local_tables(sources: list[str]) -> list[_Table]:
    files = resolve_local_files(sources)
    unsupported = [str(path) for path in files if path.suffix not in CHAT_SUFFIXES]
    if unsupported:
        raise SourceError(f"conversations are read from {'/'.join(CHAT_SUFFIXES)} files, not {', '.join(unsupported)}")
    return [_file_table(path) for path in files]


def _table_format(table: _Table) -> str:
    if MESSAGES_COLUMN in table.columns:
        return "messages"
    if is_oasst_table(table.columns):
        return "oasst"
    raise SourceError(
        f"{table.name}: no {MESSAGES_COLUMN!r} column (columns: {', '.join(table.columns) or 'none'}); expected "
        f"conversations as a 'messages' list of {{role, content}}, or OpenAssistant's message table"
    )


def _message_list(location: str, row: dict[str, Any]) -> list[dict[str, str]]:
    """The row's messages as {role, content} dicts; an error naming the row when they are malformed."""
    if MESSAGES_COLUMN not in row:
        raise SourceError(f"{location}: no {MESSAGES_COLUMN!r} field (fields: {', '.join(map(str, row)) or 'none'})")
    messages = row[MESSAGES_COLUMN]
    if not isinstance(messages, list):
        raise SourceError(f"{location}: {MESSAGES_COLUMN!r} is {type(messages).__name__}, not a list of messages")
    clean = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise SourceError(f"{location}: message {index} is not a {{role, content}} object: {message!r:.80}")
        role, content = message["role"], message.get("content")
        if role not in ROLES:
            raise SourceError(f"{location}: message {index} has unknown role {role!r} (expected {', '.join(ROLES)})")
        if content is not None and not isinstance(content, str):
            raise SourceError(f"{location}: message {index} content is {type(content).__name__}, not a string")
        clean.append({"role": role, "content": content or ""})
    return clean


def _messages_key(messages: list[dict[str, str]]) -> str:
    return json.dumps(messages, ensure_ascii=False, sort_keys=True)


def read_conversations(
    sources: list[str], *, threads: str, lang: str | None, train_split: str, val_split: str
) -> tuple[list[Conversation], DropTally, str]:
    """Every conversation of the sources (not yet validated), what OASST thread building left out, and the
    source format ("messages" or "oasst")."""
    tables = _hub_tables(sources[0], train_split, val_split) if _is_hub_id(sources) else _local_tables(sources)
    formats = {table.name: _table_format(table) for table in tables}
    if len(set(formats.values())) > 1:
        mixed = ", ".join(f"{name} ({kind})" for name, kind in formats.items())
        raise SourceError(f"the sources mix conversation formats: {mixed}")
    source_format = next(iter(formats.values()))
    tally = DropTally(Counter(), Counter(), {})
    conversations: list[Conversation] = []
    if source_format == "messages":
        if lang is not None:
            raise InputError("--lang filters OpenAssistant trees; these sources are in the 'messages' format")
        for table in tables:
            for location, row in table.rows:
                messages = _message_list(location, row)
                conversations.append(Conversation(messages, _messages_key(messages), location, table.split))
        return conversations, tally, source_format
    # OASST: parents may sit in any file, so local files form one table; a Hub split is its own table.
    groups: dict[str | None, list[_Table]] = {}
    for table in tables:
        groups.setdefault(table.split, []).append(table)
    for split, group in groups.items():
        built = oasst_threads(chain.from_iterable(table.rows for table in group), threads, lang)
        conversations += [Conversation(t.messages, t.tree_id, t.location, split) for t in built.threads]
        for (tree, reason), count in built.dropped.items():
            tally.dropped[tree, split, reason] += count
        for (tree, reason), count in built.excluded.items():
            tally.excluded[tree, split, reason] += count
        tally.first = built.first | tally.first
    return conversations, tally, source_format


# ----------------------------------------------------------------------------- validation
def special_token_texts(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Texts the tokenizer turns into special tokens wherever they occur (chat markers, end-of-text)."""
    added = [token.content for token in tokenizer.added_tokens_decoder.values() if token.special]
    return sorted(set(added) | set(tokenizer.all_special_tokens))


def conversation_problem(messages: list[dict[str, str]], markers: Iterable[str]) -> str | None:
    """The reason to drop a conversation (one of CONVERSATION_DROPS but too_long), or None when it is fine."""
    if any(not message["content"].strip() for message in messages):
        return "empty_message"
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if any(message["role"] != ("user", "assistant")[i % 2] for i, message in enumerate(turns)):
        return "roles_not_alternating"
    if not turns or turns[-1]["role"] != "assistant":
        return "not_ending_with_assistant"
    if any(marker in message["content"] for message in messages for marker in markers):
        return "chat_marker_in_content"
    return None


# ----------------------------------------------------------------------------- tokenization
def _encode_batch(batch: dict[str, list[Any]], tokenizer: PreTrainedTokenizerBase) -> dict[str, list[list[int]]]:
    encoded = tokenizer.apply_chat_template(
        batch[MESSAGES_COLUMN], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return {"input_ids": encoded["input_ids"], "assistant_masks": encoded["assistant_masks"]}


def tokenize_conversations(
    conversations: list[list[dict[str, str]]], tokenizer: PreTrainedTokenizerBase, cache_file: Path, num_proc: int = 1
) -> Dataset:
    """(n,) conversations -> (n,) rows of ``input_ids`` and ``assistant_masks`` (``tokenizer`` has the chat
    template), written to ``cache_file``."""
    features = Features({"input_ids": List(Value(token_dtype(tokenizer))), "assistant_masks": List(Value("uint8"))})
    workers = num_proc if num_proc > 1 and len(conversations) >= MIN_CONVERSATIONS_FOR_WORKERS else None
    return Dataset.from_dict({MESSAGES_COLUMN: conversations}).map(
        partial(_encode_batch, tokenizer=tokenizer),
        batched=True,
        batch_size=MAP_BATCH_SIZE,
        num_proc=workers,
        remove_columns=[MESSAGES_COLUMN],
        features=features,
        cache_file_name=str(cache_file),
        new_fingerprint=uuid.uuid4().hex,  # fresh work folder each run: never reuse, never hash the tokenizer
        load_from_cache_file=False,
        desc="Tokenizing conversations",
    )


# ----------------------------------------------------------------------------- splits
def _held_out(key: str, val_fraction: float) -> bool:
    return _hash_fraction(key) < val_fraction


def _hash_fraction(key: str) -> float:
    """A uniform number in [0, 1) fixed by ``key``."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:8], "big") / 2**64


def _split_resolver(kept: list[Conversation], val_fraction: float) -> Callable[[str, str | None], str]:
    """key, fixed split -> "train" / "val": the fixed split, else the hash; when the hash puts no kept
    conversation in val, the kept key with the smallest hash goes there."""
    hashed = [c.key for c in kept if c.split is None]
    forced = None
    if hashed and not any(_held_out(key, val_fraction) for key in hashed):
        forced = min(hashed, key=_hash_fraction)

    def resolve(key: str, split: str | None) -> str:
        if split is not None:
            return split
        return "val" if key == forced or _held_out(key, val_fraction) else "train"

    return resolve


def _per_split(
    counts: Counter[tuple[str, str | None, str]], resolve: Callable[[str, str | None], str], reasons: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    """Counts by reason for train and val (every reason listed, zeros included)."""
    result = {split: dict.fromkeys(reasons, 0) for split in ("train", "val")}
    for (key, split, reason), count in counts.items():
        result[resolve(key, split)][reason] += count
    return result


# ----------------------------------------------------------------------------- the whole preparation
def _validate_arguments(threads: str, max_length: int, val_fraction: float, num_proc: int) -> None:
    if threads not in THREAD_MODES:
        raise InputError(f"threads must be one of {', '.join(THREAD_MODES)}, got {threads!r}")
    if max_length < 2:
        raise InputError(f"max_length must be >= 2 tokens, got {max_length}")
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if num_proc < 1:
        raise InputError(f"num_proc must be >= 1, got {num_proc}")


def prepare_chat_data(
    sources: list[str] | str,
    output_dir: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase = DEFAULT_TOKENIZER,
    threads: str = "best",
    lang: str | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    train_split: str = "train",
    val_split: str = "validation",
    num_proc: int = 1,
    tokens_per_shard: int = DEFAULT_TOKENS_PER_SHARD,
    verbose: bool = True,
) -> Path:
    """Tokenize the conversations of ``sources`` into ``output_dir`` (see the module docstring); return its path.

    ``sources``: a Hub dataset id (its ``train_split``, and ``val_split`` when it has one) or local
    ``.jsonl``/``.parquet`` files, folders, globs. ``threads`` and ``lang`` apply to OpenAssistant
    tables (``data.oasst``). The output is crash-safe and re-runs behave as ``prepare_data``'s.
    """
    sources = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
    sources = [os.fspath(source) for source in sources]
    _validate_arguments(threads, max_length, val_fraction, num_proc)
    output_dir = Path(output_dir).absolute()
    source_recipe = (
        {"source": "hub", "repo": sources[0], "train_split": train_split, "val_split": val_split}
        if _is_hub_id(sources) else {"source": "local", "files": [str(path) for path in resolve_local_files(sources)]}
    )
    # A tokenizer object is copied, so the caller's keeps no chat tokens; a name or path loads a fresh one.
    is_object = isinstance(tokenizer, PreTrainedTokenizerBase)
    tokenizer = copy.deepcopy(tokenizer) if is_object else load_tokenizer(tokenizer)
    eot_id, _ = add_chat_template(tokenizer)
    fingerprint = tokenizer_fingerprint(tokenizer)
    recipe = {
        "content": CHAT_CONTENT,
        **source_recipe,
        "threads": threads,
        "lang": lang,
        "max_length": max_length,
        "val_fraction": val_fraction,
        "tokenizer_hash": fingerprint,
        "chat_template_hash": hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest(),
        "tokens_per_shard": tokens_per_shard,
        "format_version": FORMAT_VERSION,
    }
    if check_existing_output(output_dir, recipe):
        say(verbose, f"{output_dir} already holds complete data prepared with these arguments; nothing to do")
        return output_dir
    started = time.time()
    conversations, tally, source_format = read_conversations(
        sources, threads=threads, lang=lang, train_split=train_split, val_split=val_split
    )
    markers = special_token_texts(tokenizer)
    valid = []
    for conversation in conversations:
        problem = conversation_problem(conversation.messages, markers)
        if problem:
            tally.drop(conversation, problem)
        else:
            valid.append(conversation)
    with atomic_output_dir(output_dir, recipe) as work_dir:
        staging = work_dir / "staging"
        staging.mkdir()
        tokens = tokenize_conversations([c.messages for c in valid], tokenizer, staging / "tokens.arrow", num_proc)
        fits = document_lengths(tokens) <= max_length
        for conversation in (c for c, fit in zip(valid, fits, strict=True) if not fit):
            tally.drop(conversation, "too_long")
        kept = [c for c, fit in zip(valid, fits, strict=True) if fit]
        resolve = _split_resolver(kept, val_fraction)
        rows = {"train": [], "val": []}
        for index in np.flatnonzero(fits).tolist():
            rows[resolve(valid[index].key, valid[index].split)].append(index)
        for split, indices in rows.items():
            if not indices:
                raise SourceError(f"no {split} conversation left in {', '.join(sources)} ({len(conversations)} read; "
                                  f"dropped: {_reasons(tally.dropped)}); see the rules in nanogpt2.data.chat")
        oasst = source_format == "oasst"
        dropped = _per_split(tally.dropped, resolve, CONVERSATION_DROPS + (THREAD_DROPS if oasst else ()))
        excluded = _per_split(tally.excluded, resolve, MESSAGE_EXCLUSIONS) if oasst else None
        splits = {}
        for split, indices in rows.items():
            # save_split reads the Arrow table itself: materialise the selection (else it sees every row).
            rows_of_split = tokens.select(indices).flatten_indices(cache_file_name=str(staging / f"{split}.arrow"))
            splits[split] = save_split(rows_of_split, work_dir / split, tokens_per_shard, num_proc)
            splits[split]["dropped"] = dropped[split]
            if excluded:
                splits[split]["messages_excluded"] = excluded[split]
        tokenizer.save_pretrained(str(work_dir / TOKENIZER_DIR))
        del tokens, rows_of_split
        shutil.rmtree(staging)
        meta = data_meta(
            content=CHAT_CONTENT, started=started, sources=sources, tokenizer=tokenizer, fingerprint=fingerprint,
            eot_id=eot_id, dtype=token_dtype(tokenizer), splits=splits, recipe=recipe,
            source=recipe["source"], source_format=source_format, threads=threads if oasst else None, lang=lang,
            max_length=max_length, conversations_read=len(conversations), dropped=_totals(dropped),
            dropped_first=tally.first, **({"messages_excluded": _totals(excluded)} if excluded else {}),
        )
        write_json(work_dir / META_FILE, meta)
    say(
        verbose,
        f"Wrote {output_dir}: train {splits['train']['documents']:,} conversations / {splits['train']['tokens']:,} "
        f"tokens, val {splits['val']['documents']:,} / {splits['val']['tokens']:,}; dropped {_reasons(tally.dropped)} "
        f"({time.time() - started:.1f} s)",
    )
    return output_dir


def _totals(per_split: dict[str, dict[str, int]]) -> dict[str, int]:
    return {reason: sum(counts[reason] for counts in per_split.values()) for reason in per_split["train"]}


def _reasons(counts: Counter[tuple[str, str | None, str]]) -> str:
    totals: Counter[str] = Counter()
    for (_, _, reason), count in counts.items():
        totals[reason] += count
    return ", ".join(f"{reason} {count}" for reason, count in sorted(totals.items())) or "none"
