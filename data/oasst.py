"""OpenAssistant (oasst1 / oasst2) message trees -> conversation threads.

The published tables are flat, one row per message: ``message_id``, ``parent_id`` (null for the
prompt that starts a tree), ``text``, ``role`` (``prompter`` / ``assistant``), ``lang``, ``rank``
(0 = best among its siblings), ``deleted``, ``review_result``, ``message_tree_id``, ... Threads are
built from one table at a time (a Hub split, or all local files together), by these rules:

* Excluded, each with its whole subtree, and counted by reason (``messages_excluded``): a
  ``deleted`` message; a message that failed review (``review_result`` false; null = not reviewed,
  kept); a message whose ``parent_id`` names no message of the table (``orphan``: filtered exports
  lose parents, so the subtree is dropped and counted rather than failing the whole table).
* Unanswered prompts: a prompter message left with no reply is removed (``unanswered_prompt``),
  repeatedly, so every thread ends with an assistant message; a tree whose first prompt is left
  with no reply gives no thread (a dropped conversation, reason ``unanswered``).
* ``best``: from the root, at each level the reply with the lowest ``rank``; unranked replies
  (null) come after ranked ones, ties go to the smaller ``message_id``. One thread per tree.
  ``all``: every root-to-leaf path of the tree.
* ``lang``: a tree's language is its root prompt's ``lang`` (OASST labels a tree by its first
  prompt; the labels detected on replies may differ); threads of other trees are dropped (reason
  ``other_language``). The match is exact (``en`` keeps ``en``, not ``en-GB``).
* Roles: ``prompter`` -> ``user``; a role other than prompter/assistant, a missing ``message_id``
  or a repeated one is an error naming the row.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..utils import InputError

OASST_COLUMNS = ("message_id", "parent_id", "text", "role")
THREAD_MODES = ("best", "all")
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}
MESSAGE_EXCLUSIONS = ("deleted", "failed_review", "orphan", "unanswered_prompt")
THREAD_DROPS = ("unanswered", "other_language")


def is_oasst_table(columns: Iterable[str]) -> bool:
    """True when the columns are those of OpenAssistant's flat message table."""
    return set(OASST_COLUMNS) <= set(columns)


@dataclass
class _Message:
    message_id: str
    parent_id: str | None
    role: str  # user / assistant
    text: str
    lang: str | None
    rank: float | None
    excluded: str | None  # deleted / failed_review, else None
    tree_id: str
    location: str
    replies: list[_Message] = field(default_factory=list)

    def order(self) -> tuple[bool, float, str]:
        """Best first: ranked before unranked, lower rank first, then message_id."""
        return (self.rank is None, self.rank if self.rank is not None else 0.0, self.message_id)


@dataclass
class Thread:
    """One conversation: ``messages`` ({role, content}, user/assistant alternating) of tree ``tree_id``."""

    tree_id: str
    location: str  # the row of its root prompt
    messages: list[dict[str, str]]


@dataclass
class OasstThreads:
    threads: list[Thread]
    dropped: Counter[tuple[str, str]]  # (tree_id, reason) -> threads not made
    excluded: Counter[tuple[str, str]]  # (tree_id, reason) -> messages left out of every thread
    first: dict[str, str] = field(default_factory=dict)  # reason -> the row of the first tree it hit


def _parse(location: str, row: dict[str, Any]) -> _Message:
    message_id, role = row.get("message_id"), row.get("role")
    if not isinstance(message_id, str) or not message_id:
        raise InputError(f"{location}: message_id is {message_id!r}, not a string")
    if role not in OASST_ROLES:
        raise InputError(f"{location}: unknown role {role!r} (OpenAssistant roles: prompter, assistant)")
    rank = row.get("rank")
    if isinstance(rank, float) and math.isnan(rank):  # pandas-written parquet stores a missing rank as NaN
        rank = None
    excluded = None
    if row.get("deleted") is True:
        excluded = "deleted"
    elif row.get("review_result") is False:
        excluded = "failed_review"
    text = row.get("text")
    return _Message(
        message_id=message_id, parent_id=row.get("parent_id"), role=OASST_ROLES[role],
        text=text if isinstance(text, str) else "", lang=row.get("lang"), rank=rank, excluded=excluded,
        tree_id=str(row.get("message_tree_id") or message_id), location=location,
    )


def _subtree_size(message: _Message) -> int:
    return 1 + sum(_subtree_size(reply) for reply in message.replies)


def _prune(message: _Message, excluded: Counter[tuple[str, str]]) -> bool:
    """Drop excluded replies and unanswered prompts below ``message`` (counting them); False when
    ``message`` itself is an unanswered prompt."""
    kept = []
    for reply in message.replies:
        if reply.excluded:
            excluded[reply.tree_id, reply.excluded] += _subtree_size(reply)
        elif _prune(reply, excluded):
            kept.append(reply)
    message.replies = sorted(kept, key=_Message.order)
    if message.role == "user" and not kept:
        excluded[message.tree_id, "unanswered_prompt"] += 1
        return False
    return True


def _paths(message: _Message, mode: str) -> Iterator[list[_Message]]:
    if not message.replies:
        yield [message]
        return
    for reply in message.replies[:1] if mode == "best" else message.replies:
        for path in _paths(reply, mode):
            yield [message, *path]


def oasst_threads(rows: Iterable[tuple[str, dict[str, Any]]], mode: str, lang: str | None) -> OasstThreads:
    """Threads of one message table given as (location, row) pairs, by the rules of the module docstring."""
    if mode not in THREAD_MODES:
        raise InputError(f"threads must be one of {', '.join(THREAD_MODES)}, got {mode!r}")
    messages: dict[str, _Message] = {}
    for location, row in rows:
        message = _parse(location, row)
        if message.message_id in messages:
            raise InputError(f"{location}: message_id {message.message_id!r} repeats the one at "
                             f"{messages[message.message_id].location}")
        messages[message.message_id] = message
    roots, orphans = [], []
    for message in messages.values():
        if message.parent_id is None:
            roots.append(message)
        elif message.parent_id in messages:
            messages[message.parent_id].replies.append(message)
        else:
            orphans.append(message)
    result = OasstThreads([], Counter(), Counter())
    for orphan in orphans:
        result.excluded[orphan.tree_id, "orphan"] += _subtree_size(orphan)
        result.first.setdefault("orphan", orphan.location)
    for root in roots:
        if root.excluded:
            result.excluded[root.tree_id, root.excluded] += _subtree_size(root)
            continue
        if not _prune(root, result.excluded):
            result.dropped[root.tree_id, "unanswered"] += 1
            result.first.setdefault("unanswered", root.location)
            continue
        for path in _paths(root, mode):
            if lang is not None and root.lang != lang:
                result.dropped[root.tree_id, "other_language"] += 1
                result.first.setdefault("other_language", root.location)
                continue
            result.threads.append(Thread(root.tree_id, root.location,
                                         [{"role": m.role, "content": m.text} for m in path]))
    return result
