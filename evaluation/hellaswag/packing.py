"""Lay scoring requests out in rows: each example's context once with its endings after it, several
examples to a row, or (the plain layout) each context + ending in a row of its own.

A segment is one context followed by the endings that share it, each without its last token:

    [ context | ending 1[:-1] | ending 2[:-1] | ... ]

The context's last position predicts the first token of every ending; each ending position predicts
the next token of its ending. A segment of one request is exactly the plain row `tokens[:-1]`. In a
packed row a 4D mask lets every token see its own segment's context and the earlier tokens of its
own ending, nothing else, and position ids restart at each segment and continue from the context's
length in each ending: every token gets the inputs and position it has in its plain row.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import torch

from .requests import EndingRequest

PAD = -1  # segment slot of padding; its token id is 0 (any id will do: padding is never seen nor scored)


@dataclass
class Batch:
    """The inputs of one forward pass and where its scored tokens are. B rows of T tokens, M scored tokens."""

    input_ids: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T)
    slots: torch.Tensor  # (B, T) which segment of its row a token is in, PAD for padding
    parts: torch.Tensor  # (B, T) 0 context, j + 1 ending j
    keep: torch.Tensor  # (B, T) boolean: positions whose output is scored (N of them)
    scored_at: torch.Tensor  # (M,) which of the N kept positions predicts each scored token
    targets: torch.Tensor  # (M,) the scored token
    owners: torch.Tensor  # (M,) index of the request whose ending the token belongs to


def shares_context(segment: list[EndingRequest]) -> bool:
    """Whether every request of `segment` starts with the same context (left truncation may cut them differently)."""
    n = len(segment[0].tokens) - segment[0].n_ending_tokens
    return all(len(r.tokens) - r.n_ending_tokens == n and r.tokens[:n] == segment[0].tokens[:n] for r in segment)


def segment_length(segment: list[EndingRequest]) -> int:
    """Tokens one segment takes in a row: its context once, each ending but its last token."""
    context = len(segment[0].tokens) - segment[0].n_ending_tokens
    return context + sum(r.n_ending_tokens - 1 for r in segment)


def pack_segments(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into rows of at most `capacity` tokens, best fit decreasing: each
    segment, longest first, goes to the fullest row it fits in. Deterministic."""
    if lengths and max(lengths) > capacity:
        raise ValueError(f"a segment of {max(lengths)} tokens does not fit a row of {capacity}")
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free tokens, row index), sorted
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        k = bisect.bisect_left(free, (lengths[index], -1))
        if k == len(free):
            rows.append([index])
            bisect.insort(free, (capacity - lengths[index], len(rows) - 1))
        else:
            room, row = free.pop(k)
            rows[row].append(index)
            bisect.insort(free, (room - lengths[index], row))
    return rows


def plan_batches(requests: list[EndingRequest], batch_size: int, *, share_context: bool) -> list[list[list[list[int]]]]:
    """The forward passes that score `requests`: batch -> row -> segment -> request indices.

    With `share_context` each example whose endings share their context is one segment, the others one
    segment per request, and segments are packed into rows as long as the longest segment; without it
    every request is a row of its own, longest first. A batch holds rows until it has at least
    `batch_size` examples' requests (an out-of-memory error shows in the first, longest batch).
    """
    by_example: dict[int, list[int]] = {}
    for index, request in enumerate(requests):
        by_example.setdefault(request.example, []).append(index)
    segments = []
    for group in by_example.values():
        shared = share_context and shares_context([requests[r] for r in group])
        segments += [group] if shared else [[r] for r in group]
    lengths = [segment_length([requests[r] for r in segment]) for segment in segments]
    if share_context:
        rows = pack_segments(lengths, capacity=max(lengths, default=0))
    else:
        rows = [[i] for i in sorted(range(len(segments)), key=lambda i: (-lengths[i], i))]

    per_batch = batch_size * max((len(group) for group in by_example.values()), default=1)
    batches, batch, n_requests = [], [], 0
    for row in rows:
        batch.append([segments[i] for i in row])
        n_requests += sum(len(segments[i]) for i in row)
        if n_requests >= per_batch:
            batches.append(batch)
            batch, n_requests = [], 0
    return batches + ([batch] if batch else [])


def build_batch(requests: list[EndingRequest], rows: list[list[list[int]]]) -> Batch:
    """The tensors (on the CPU) of one planned batch."""
    width = max(sum(segment_length([requests[r] for r in segment]) for segment in row) for row in rows)  # T
    ids = np.zeros((len(rows), width), dtype=np.int64)
    slots = np.full((len(rows), width), PAD, dtype=np.int64)
    parts = np.zeros((len(rows), width), dtype=np.int64)
    positions = np.zeros((len(rows), width), dtype=np.int64)
    query_b, query_t, targets, owners = [], [], [], []  # per scored token: the (row, column) predicting it
    for b, row in enumerate(rows):
        t = 0
        for slot, segment in enumerate(row):
            first = requests[segment[0]]
            n_ctx = len(first.tokens) - first.n_ending_tokens
            span = slice(t, t + n_ctx)
            ids[b, span], slots[b, span], positions[b, span] = first.tokens[:n_ctx], slot, range(n_ctx)
            context_last, t = t + n_ctx - 1, t + n_ctx
            for j, r in enumerate(segment):
                ending = requests[r].tokens[n_ctx:]
                n_in = len(ending) - 1  # the ending without its last token, whose output is not scored
                span = slice(t, t + n_in)
                ids[b, span], slots[b, span], parts[b, span] = ending[:-1], slot, j + 1
                positions[b, span] = range(n_ctx, n_ctx + n_in)
                query_b += [b] * len(ending)
                query_t += [context_last, *range(t, t + n_in)]
                targets += ending
                owners += [r] * len(ending)
                t += n_in

    keep = np.zeros((len(rows), width), dtype=bool)
    keep[query_b, query_t] = True
    kept_index = np.cumsum(keep.reshape(-1)) - 1  # (B * T,): index of a kept position among the kept, row-major
    return Batch(
        input_ids=torch.from_numpy(ids),
        position_ids=torch.from_numpy(positions),
        slots=torch.from_numpy(slots),
        parts=torch.from_numpy(parts),
        keep=torch.from_numpy(keep),
        scored_at=torch.from_numpy(kept_index[np.asarray(query_b) * width + np.asarray(query_t)]),
        targets=torch.tensor(targets),
        owners=torch.tensor(owners),
    )


def packed_attention_mask(slots: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """Boolean (B, 1, T, T) mask from each token's segment slot (B, T; -1 for padding) and part (B, T;
    0 context, j + 1 ending j): causal, within one segment, an ending's keys visible only to the same
    ending. Every token sees itself, so that no row is empty (SDPA would give NaN) and padding stays finite."""
    T = slots.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=slots.device).tril()  # (T, T): key <= query
    slot_q, slot_k = slots[:, :, None], slots[:, None, :]  # (B, T, 1), (B, 1, T)
    part_q, part_k = parts[:, :, None], parts[:, None, :]
    visible = (slot_k == slot_q) & (slot_k != PAD) & ((part_k == 0) | (part_k == part_q))  # (B, T, T)
    return ((causal & visible) | torch.eye(T, dtype=torch.bool, device=slots.device))[:, None]
