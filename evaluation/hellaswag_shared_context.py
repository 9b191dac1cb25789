"""Score all endings of an example against one pass over their shared context (KV cache).

The four endings of a HellaSwag example share its context, which is most of their tokens. Here
the contexts of a batch of examples run once (right-padded, B rows); then the batch's ending rows,
sorted by length and cut into chunks of B rows, run on top of a copy of the cache whose rows are
their examples' contexts. That is about 1.5x fewer tokens than scoring whole context + ending rows.

Ending row (i, j) attends to example i's cached context (its padding masked out) and to its own
earlier tokens; its positions continue from the context's real length. The first ending token is
predicted by the context's last real position, the others by the ending pass.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .hellaswag_tokenize import EndingRequest


def context_length(rows: list[EndingRequest]) -> int | None:
    """Token count of the context shared by all `rows` of one example, or None when the rows do
    not start with the same context (left truncation cut them differently)."""
    lengths = {len(row.tokens) - row.n_ending_tokens for row in rows}
    if len(lengths) != 1:
        return None
    n = lengths.pop()
    first = rows[0].tokens[:n]
    return n if all(row.tokens[:n] == first for row in rows[1:]) else None


def score_examples_shared(
    model: torch.nn.Module,
    examples: list[list[EndingRequest]],
    *,
    pad_id: int,
    device: torch.device,
    max_length: int | None,
    positions_mode: bool,
) -> list[torch.Tensor]:
    """For each example (its E rows), the summed log-probability of each ending: float64 (E,)."""
    n_endings = len(examples[0])
    if any(len(rows) != n_endings for rows in examples):
        raise ValueError("examples of one shared-context batch must have the same number of endings")
    ctx_lengths = [context_length(rows) for rows in examples]
    if any(n is None for n in ctx_lengths):
        raise ValueError("an example has no shared context")
    n_examples = len(examples)
    width_ctx = max(ctx_lengths)  # Tc

    # Context pass: (B, Tc), right-padded.
    ctx_ids = np.full((n_examples, width_ctx), pad_id, dtype=np.int64)
    ctx_mask = np.zeros((n_examples, width_ctx), dtype=np.int64)
    for i, (rows, n) in enumerate(zip(examples, ctx_lengths, strict=True)):
        ctx_ids[i, :n] = rows[0].tokens[:n]
        ctx_mask[i, :n] = 1
    last = torch.tensor(ctx_lengths, device=device) - 1  # (B,) last real context position
    ctx_mask_t = torch.from_numpy(ctx_mask).to(device)
    kwargs: dict[str, Any] = {}
    if positions_mode:
        keep = torch.zeros((n_examples, width_ctx), dtype=torch.bool, device=device)
        keep[torch.arange(n_examples, device=device), last] = True
        kwargs["logits_to_keep"] = keep
    out = model(input_ids=torch.from_numpy(ctx_ids).to(device), attention_mask=ctx_mask_t, use_cache=True, **kwargs)
    if positions_mode:
        ctx_logits = out.logits  # (B, vocab)
    else:
        ctx_logits = out.logits[torch.arange(n_examples, device=device), last]  # (B, vocab)
    first_logprobs = torch.log_softmax(ctx_logits.float(), dim=-1)  # (B, vocab)
    ctx_cache = out.cache

    # Ending passes: the B * E ending rows sorted by length and cut into E chunks of B rows, so each
    # chunk pads to a similar length; each chunk gets its examples' context keys/values (a copy of
    # the cache with the rows selected, repeats allowed). A row's inputs are all its ending tokens
    # (the last one's output is unused) and its positions continue from its context's length.
    rows_flat = [row for rows in examples for row in rows]
    sums = torch.zeros(len(rows_flat), dtype=torch.float64, device=device)
    by_length = sorted(range(len(rows_flat)), key=lambda r: (-rows_flat[r].n_ending_tokens, r))
    chunks = [by_length[k : k + n_examples] for k in range(0, len(by_length), n_examples)]
    for c, chunk in enumerate(chunks):
        example_of_row = torch.tensor([r // n_endings for r in chunk], device=device)  # (R,)
        cache = ctx_cache if c == len(chunks) - 1 else copy.deepcopy(ctx_cache)
        cache.batch_select_indices(example_of_row)
        sums[torch.tensor(chunk, device=device)] = _score_endings(
            model,
            [rows_flat[r] for r in chunk],
            cache=cache,
            ctx_mask=ctx_mask_t[example_of_row],
            ctx_lengths=torch.tensor(ctx_lengths, device=device)[example_of_row],
            first_logprobs=first_logprobs[example_of_row],
            pad_id=pad_id,
            max_length=max_length,
            positions_mode=positions_mode,
        )
    return list(sums.view(n_examples, n_endings))


def _score_endings(
    model: torch.nn.Module,
    rows: list[EndingRequest],
    *,
    cache: Any,
    ctx_mask: torch.Tensor,
    ctx_lengths: torch.Tensor,
    first_logprobs: torch.Tensor,
    pad_id: int,
    max_length: int | None,
    positions_mode: bool,
) -> torch.Tensor:
    """Summed log-probability of each row's ending, float64 (R,), given its context's `cache`
    (R rows), `ctx_mask` (R, Tc), `ctx_lengths` (R,) and `first_logprobs` (R, vocab): the
    context's prediction of the first ending token."""
    device = ctx_mask.device
    width = max(row.n_ending_tokens for row in rows)  # Te
    end_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    end_mask = np.zeros((len(rows), width), dtype=np.int64)
    scored = np.zeros((len(rows), width), dtype=bool)  # positions predicting ending tokens 2..n
    for r, row in enumerate(rows):
        n = row.n_ending_tokens
        end_ids[r, :n] = row.tokens[-n:]
        end_mask[r, :n] = 1
        scored[r, : n - 1] = True
    positions = ctx_lengths[:, None] + torch.arange(width, device=device)[None, :]  # (R, Te)
    if max_length is not None:
        # Only positions whose output is unused can pass the end: padding, and a row's last token
        # when context + ending fill the model's length (no real token attends to it).
        positions = positions.clamp(max=max_length - 1)
    scored_t = torch.from_numpy(scored).to(device)
    kwargs = {"logits_to_keep": scored_t} if positions_mode else {}
    out = model(
        input_ids=torch.from_numpy(end_ids).to(device),
        attention_mask=torch.cat([ctx_mask, torch.from_numpy(end_mask).to(device)], dim=1),  # (R, Tc + Te)
        position_ids=positions,
        cache=cache,
        use_cache=True,
        **kwargs,
    )
    picked = out.logits if positions_mode else out.logits[scored_t]  # (N, vocab), row-major
    targets = [token for row in rows for token in row.tokens[len(row.tokens) - row.n_ending_tokens + 1 :]]
    rest = -F.cross_entropy(picked.float(), torch.tensor(targets, dtype=torch.long, device=device), reduction="none")
    row_of_position = torch.from_numpy(np.nonzero(scored)[0]).to(device)  # (N,)
    sums = torch.zeros(len(rows), dtype=torch.float64, device=device)
    sums.index_add_(0, row_of_position, rest.double())
    first_targets = torch.tensor([row.tokens[-row.n_ending_tokens] for row in rows], device=device)
    return sums + first_logprobs.gather(1, first_targets[:, None]).squeeze(1).double()
