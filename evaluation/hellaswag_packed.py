"""Score the endings of HellaSwag examples packed into rows: each context once, then its endings.

The E endings of an example share its context, which is a large part of their tokens. Scoring
them as E separate context + ending rows runs the context E times. Here an example is one segment

    [ context | ending 1 | ending 2 | ... | ending E ]      (each ending without its last token)

and several examples share a row (packed best-fit, so rows are nearly full whatever the spread of
lengths). A 4D attention mask lets every ending token see its own example's context and the earlier
tokens of its own ending, nothing else; positions restart at each example and each ending's
continue from its context's length. Every token therefore gets exactly the inputs and position it
has in the plain context + ending row, while the rows hold the fewest tokens that can produce the
scores: each context once, and no ending's last token (its output predicts nothing that is scored).

Scored outputs: the context's last position predicts the first token of every ending (one output,
E targets), and each ending position predicts the next token of its ending. The output layer runs
only at those positions: through `token_logprobs.OutputLayer` where the model splits into body and
output layer, else by asking for their logits (`logits_to_keep` as a boolean mask).
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import torch

from .hellaswag_tokenize import EndingRequest
from .token_logprobs import OutputLayer

PAD = -1  # example slot of padding


def context_length(rows: list[EndingRequest]) -> int | None:
    """Token count of the context shared by all `rows` of one example, or None when the rows do
    not start with the same non-empty context (left truncation cut them differently)."""
    lengths = {len(row.tokens) - row.n_ending_tokens for row in rows}
    if len(lengths) != 1:
        return None
    n = lengths.pop()
    first = rows[0].tokens[:n]
    return n if n > 0 and all(row.tokens[:n] == first for row in rows[1:]) else None


def packed_length(rows: list[EndingRequest]) -> int:
    """Tokens one example takes in a packed row: its context once, each ending but its last token."""
    context = len(rows[0].tokens) - rows[0].n_ending_tokens
    return context + sum(row.n_ending_tokens - 1 for row in rows)


def pack_examples(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into rows of at most `capacity` tokens, best fit decreasing:
    each example, longest first, goes to the fullest row it fits in. Deterministic."""
    if lengths and max(lengths) > capacity:
        raise ValueError(f"an example of {max(lengths)} tokens does not fit a row of {capacity}")
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


def packed_attention_mask(slots: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """Boolean (B, 1, T, T) mask from each token's example slot (B, T; -1 for padding) and part
    (0 context, j + 1 ending j): causal, within one example, and an ending's keys visible only to
    the same ending. Every token sees itself, so that no row is empty (SDPA would give NaN) and
    padding, whose outputs are unused, stays finite."""
    T = slots.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=slots.device).tril()  # (T, T): key <= query
    slot_q, slot_k = slots[:, :, None], slots[:, None, :]  # (B, T, 1), (B, 1, T)
    part_q, part_k = parts[:, :, None], parts[:, None, :]
    same_example = (slot_k == slot_q) & (slot_k != PAD)
    visible = same_example & ((part_k == 0) | (part_k == part_q))  # (B, T, T)
    itself = torch.eye(T, dtype=torch.bool, device=slots.device)
    return ((causal & visible) | itself)[:, None]


def score_packed_rows(
    model: torch.nn.Module,
    rows: list[list[list[EndingRequest]]],
    *,
    pad_id: int,
    device: torch.device,
    positions_mode: bool,
    extra: dict[str, Any],
    output_layer: OutputLayer | None = None,
) -> torch.Tensor:
    """Summed log-probability of every ending, float64 (n_examples * E,) in the order of the
    examples in `rows` (each row: the examples packed in it, each example: its E requests).
    With `output_layer` the model's body and output layer run apart (`token_logprobs`)."""
    width = max(sum(packed_length(example) for example in row) for row in rows)  # T
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    slots = np.full((len(rows), width), PAD, dtype=np.int64)
    parts = np.zeros((len(rows), width), dtype=np.int64)
    positions = np.zeros((len(rows), width), dtype=np.int64)
    # One entry per scored token: the packed (row, column) that predicts it, the token, its ending.
    query_b, query_t, targets, owners = [], [], [], []
    n_requests = 0
    for b, row in enumerate(rows):
        start = 0
        for slot, example in enumerate(row):
            n_ctx = context_length(example)
            if n_ctx is None:
                raise ValueError("an example has no shared context")
            span = slice(start, start + n_ctx)
            ids[b, span], slots[b, span], positions[b, span] = example[0].tokens[:n_ctx], slot, np.arange(n_ctx)
            ctx_last, start = start + n_ctx - 1, start + n_ctx
            for j, request in enumerate(example):
                ending = request.tokens[-request.n_ending_tokens :]
                n_in = len(ending) - 1  # inputs: the ending without its last token
                span = slice(start, start + n_in)
                ids[b, span], slots[b, span], parts[b, span] = ending[:-1], slot, j + 1
                positions[b, span] = np.arange(n_ctx, n_ctx + n_in)
                # The context's last output predicts ending[0]; the output at ending[i], ending[i + 1].
                query_b += [b] * len(ending)
                query_t += [ctx_last, *range(start, start + n_in)]
                targets += ending
                owners += [n_requests] * len(ending)
                n_requests += 1
                start += n_in

    keep = np.zeros((len(rows), width), dtype=bool)  # (B, T): positions whose output is scored
    keep[query_b, query_t] = True
    keep_t = torch.from_numpy(keep).to(device)
    kept_index = np.cumsum(keep.reshape(-1)) - 1  # (b, t) -> index among kept positions, row-major
    picked_rows = torch.from_numpy(kept_index[np.asarray(query_b) * width + np.asarray(query_t)]).to(device)  # (M,)
    target_ids = torch.tensor(targets, device=device)  # (M,)
    inputs = {
        "input_ids": torch.from_numpy(ids).to(device),
        "attention_mask": packed_attention_mask(torch.from_numpy(slots).to(device), torch.from_numpy(parts).to(device)),
        "position_ids": torch.from_numpy(positions).to(device),
        **extra,
    }
    if output_layer is not None:
        hidden = output_layer.hidden_states(**inputs)[keep_t]  # (N, C): kept positions
        picked = output_layer.token_logprobs(hidden, picked_rows, target_ids)  # (M,)
    else:
        out = model(**inputs, **({"logits_to_keep": keep_t} if positions_mode else {}))
        logits = out.logits if positions_mode else out.logits[keep_t]  # (N, vocab): kept positions
        # log p(target) = logit(target) - logsumexp(logits), the normaliser over row chunks. On a CPU a
        # chunk of 8 rows (1.6 MB at GPT-2's vocabulary) stays in cache through logsumexp's passes and
        # its temporaries are reused, not faulted in afresh: 1.5x faster than 64 rows, 4x faster than
        # all at once.
        rows_per_chunk = 8 if logits.device.type == "cpu" else 1024
        normaliser = torch.cat([torch.logsumexp(c.float(), dim=-1) for c in logits.split(rows_per_chunk)])  # (N,)
        picked = logits[picked_rows, target_ids].float() - normaliser[picked_rows]  # (M,)
    sums = torch.zeros(n_requests, dtype=torch.float64, device=device)
    return sums.index_add_(0, torch.tensor(owners, device=device), picked.double())


def supports_packed_endings(model: torch.nn.Module, device: torch.device, extra: dict[str, Any]) -> bool:
    """Whether `model` honours a 4D attention mask together with explicit position ids.

    Probe: context "1 2" and endings "3 4" and "5 6", packed as 1 2 3 5. The output at "5" must be
    the plain row 1 2 5's, and clearly closer to it than to what a model gives that ignores either the
    mask or the positions (a tolerance relative to that gap, so that rounding under autocast is not
    taken for a misreading, nor a small random-init model's small differences for agreement).
    """

    def tensor(values: list[int]) -> torch.Tensor:
        return torch.tensor([values], device=device)

    packed, plain = tensor([1, 2, 3, 5]), tensor([1, 2, 5])
    mask = packed_attention_mask(tensor([0, 0, 0, 0]), tensor([0, 0, 1, 2]))  # (1, 1, 4, 4)
    positions, counted_on = tensor([0, 1, 2, 2]), tensor([0, 1, 2, 3])

    def logits_of_5(**kwargs: Any) -> torch.Tensor:  # the output at the token "5": last in every input
        return model(**kwargs, **extra).logits[0, -1].float()

    try:
        want = logits_of_5(input_ids=plain)
        got = logits_of_5(input_ids=packed, attention_mask=mask, position_ids=positions)
        without_mask = logits_of_5(input_ids=packed, position_ids=positions)
        without_positions = logits_of_5(input_ids=packed, attention_mask=mask, position_ids=counted_on)
    except (IndexError, RuntimeError, TypeError, ValueError):
        return False
    if got.shape != want.shape:
        return False
    real = torch.isfinite(want)  # padded vocabulary entries are -inf in every variant

    def distance(other: torch.Tensor) -> torch.Tensor:
        return (other[real] - want[real]).abs().max()

    gap = min(distance(without_mask), distance(without_positions))
    return bool(gap > 0) and bool(distance(got) <= 0.1 * gap)
