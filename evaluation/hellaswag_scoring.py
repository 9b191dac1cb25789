"""Score every HellaSwag ending with a causal LM: many examples per forward pass, little padding.

A model that takes a 4D attention mask and position ids gets the examples packed: each example's
context once with its endings after it, several examples to a row (`hellaswag_packed`), batches of
at least `batch_size` examples, and the output layer applied in tiles apart from the body where
that reproduces the model's logits (`token_logprobs`). Otherwise each (context + ending) row is
scored whole: rows sorted by length, `batch_size` examples' worth per batch, padded on the right to
the longest. Real positions never see padding, so each score equals the score of the context +
ending sequence run alone.
Batches are formed before they are shared among processes (batch k goes to process
k % world_size), so every process count computes the very same batches and the gathered scores
are identical to a single process's.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .hellaswag_packed import context_length, pack_examples, packed_length, score_packed_rows, supports_packed_endings
from .hellaswag_tokenize import EndingRequest, prefix_token_id, tokenize_requests
from .token_logprobs import OutputLayer, output_tensor


@dataclass
class HellaSwagScores:
    """Per-example, per-ending scores: the inputs of the `hellaswag` evaluate metric."""

    ending_logprobs: list[list[float]]  # total log-likelihood of each ending given the context
    ending_tokens: list[list[int]]  # number of scored tokens of each ending
    ending_chars: list[list[int]]  # characters of each ending, separating space not counted
    labels: list[int]

    def metric_inputs(self) -> dict[str, list]:
        """Keyword arguments for `metric.compute(...)`."""
        return {
            "ending_logprobs": self.ending_logprobs,
            "ending_tokens": self.ending_tokens,
            "ending_chars": self.ending_chars,
            "references": self.labels,
        }


def score_hellaswag(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[dict[str, Any]],
    *,
    style: str = "nanogpt",
    batch_size: int = 32,
    accelerator: Any = None,
    progress: bool = True,
    share_context: bool | None = None,
) -> HellaSwagScores:
    """Log-likelihood of every ending of every example, the same on every process.

    `model` is any causal LM whose output has `.logits` (a plain, unwrapped or `torch.compile`d
    module); it runs in eval mode under `torch.no_grad` (and `accelerator.autocast()` when an
    Accelerator is given), and its training mode is restored afterwards. With an Accelerator of
    several processes each process scores a disjoint share of the batches and the scores are summed
    across processes.

    `share_context` runs each example's context once, its endings packed after it under a 4D
    attention mask (see `hellaswag_packed`); None uses it when the model is shown to honour such a
    mask (a 4-token probe), True insists on it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    max_length = _max_length(model)
    requests = tokenize_requests(examples, tokenizer, style=style, max_length=max_length)
    n_endings = max((len(e["endings"]) for e in examples), default=1)

    rank, world_size = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    device = _model_device(model)
    pad_id = _pad_id(tokenizer)
    extra = _no_cache_kwargs(model)
    autocast = accelerator.autocast() if accelerator is not None else contextlib.nullcontext()

    logprob_sums = torch.zeros(len(requests), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast:
            if share_context is None:
                share_context = supports_shared_context(model, device)
                if world_size > 1:
                    # All processes must plan the same batches: pack only where every probe agreed.
                    votes = accelerator.reduce(torch.tensor([int(share_context)], device=device), reduction="sum")
                    share_context = int(votes.item()) == world_size
            batches = plan_batches(requests, batch_size, share_context=share_context)
            mode = logits_mode(model, device)
            # Body and output layer apart (no (N, vocab) logits stored) where that reproduces the model.
            output_layer = OutputLayer.of(model, device, extra) if share_context else None
            my_batches = batches[rank::world_size]
            show = progress and rank == 0
            for batch in tqdm(my_batches, desc=f"HellaSwag ({style})", unit="batch", disable=not show):
                rows = [requests[r] for r in batch.requests]
                if batch.kind == "packed":
                    examples_in_order = iter(rows[k : k + n_endings] for k in range(0, len(rows), n_endings))
                    packed = [[next(examples_in_order) for _ in range(n)] for n in batch.examples_per_row]
                    sums = score_packed_rows(
                        model,
                        packed,
                        pad_id=pad_id,
                        device=device,
                        positions_mode=mode == "positions",
                        extra=extra,
                        output_layer=output_layer,
                    )
                else:
                    sums = _score_rows(model, rows, pad_id=pad_id, device=device, logits_mode=mode, extra=extra)
                logprob_sums[torch.tensor(batch.requests, device=device)] = sums
    finally:
        model.train(was_training)
    if world_size > 1:
        # Each row was scored by exactly one process, the others hold 0.0: the sum is exact.
        logprob_sums = accelerator.reduce(logprob_sums, reduction="sum")
    return _collect(examples, requests, logprob_sums.cpu().tolist())


class Batch(NamedTuple):
    """One forward pass: "packed" (whole examples, `examples_per_row` of them in each packed row, the
    requests in that order) or "rows" (each request a context + ending row of its own)."""

    kind: str
    requests: list[int]
    examples_per_row: tuple[int, ...] = ()


def plan_batches(requests: list[EndingRequest], batch_size: int, *, share_context: bool) -> list[Batch]:
    """The forward passes that score `requests`, longest first (an out-of-memory error shows at once).

    With `share_context`, examples whose endings share their context tokens are packed into rows as
    long as the longest such example (`pack_examples`), and consecutive rows form a batch of at
    least `batch_size` examples. The other requests form "rows" batches of `batch_size * E` rows,
    sorted by length so that padding is minimal.
    """
    by_example: dict[int, list[int]] = {}
    for index, request in enumerate(requests):
        by_example.setdefault(request.example, []).append(index)
    n_endings = max((len(rows) for rows in by_example.values()), default=1)

    plain_rows: list[int] = []
    shared_examples: list[list[int]] = []
    for rows in by_example.values():
        same_count = len(rows) == n_endings
        if share_context and same_count and context_length([requests[r] for r in rows]) is not None:
            shared_examples.append(rows)
        else:
            plain_rows += rows

    batches: list[Batch] = []
    lengths = [packed_length([requests[r] for r in rows]) for rows in shared_examples]
    pending: list[list[int]] = []  # packed rows of the batch being formed, as example indices
    for row in pack_examples(lengths, capacity=max(lengths, default=0)):
        pending.append(row)
        if sum(map(len, pending)) >= batch_size:
            batches.append(_packed_batch(pending, shared_examples))
            pending = []
    if pending:
        batches.append(_packed_batch(pending, shared_examples))
    plain_rows.sort(key=lambda r: (-len(requests[r].tokens), r))
    rows_per_batch = batch_size * n_endings
    for k in range(0, len(plain_rows), rows_per_batch):
        batches.append(Batch("rows", plain_rows[k : k + rows_per_batch]))
    return batches


def _packed_batch(packed_rows: list[list[int]], examples: list[list[int]]) -> Batch:
    requests = [r for row in packed_rows for example in row for r in examples[example]]
    return Batch("packed", requests, tuple(len(row) for row in packed_rows))


def supports_shared_context(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether each example's endings can be packed after its context: the model takes position ids
    and honours a 4D attention mask (`supports_packed_endings`), and is not compiled (where each
    batch's new mask shape would cost a recompilation)."""
    if _unwrapped(model) is not model or "position_ids" not in _forward_parameters(model):
        return False
    return supports_packed_endings(model, device, _no_cache_kwargs(model))


def _score_rows(
    model: torch.nn.Module,
    rows: list[EndingRequest],
    *,
    pad_id: int,
    device: torch.device,
    logits_mode: str,
    extra: dict[str, Any],
) -> torch.Tensor:
    """Summed log-probability of each row's ending tokens, float64 of shape (R,)."""
    n_rows = len(rows)
    width = max(len(row.tokens) for row in rows) - 1  # T: inputs are tokens[:-1]
    input_ids = np.full((n_rows, width), pad_id, dtype=np.int64)
    targets = np.zeros((n_rows, width), dtype=np.int64)
    attention_mask = np.zeros((n_rows, width), dtype=np.int64)
    scored = np.zeros((n_rows, width), dtype=bool)  # positions whose target is an ending token
    for r, row in enumerate(rows):
        length = len(row.tokens) - 1
        input_ids[r, :length] = row.tokens[:-1]
        targets[r, :length] = row.tokens[1:]
        attention_mask[r, :length] = 1
        scored[r, length - row.n_ending_tokens : length] = True

    ids = torch.from_numpy(input_ids).to(device)
    mask = torch.from_numpy(attention_mask).to(device)
    if logits_mode == "positions":
        # lm_head only at the scored positions: logits come back flattened to (N, vocab), row-major.
        keep = torch.from_numpy(scored).to(device)  # (R, T)
        picked = output_tensor(model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, **extra))
        picked_targets = torch.from_numpy(targets[scored]).to(device)  # (N,)
        row_of_position = torch.from_numpy(np.nonzero(scored)[0]).to(device)  # (N,)
    else:
        # Only positions from the earliest scored one on need logits: skip the lm_head (and its
        # (R, T, vocab) output) for the context part that comes before every row's ending.
        first_scored = min(len(row.tokens) - 1 - row.n_ending_tokens for row in rows)
        n_keep = width - first_scored
        if logits_mode == "last":
            extra = {**extra, "logits_to_keep": n_keep}
        logits = output_tensor(model(input_ids=ids, attention_mask=mask, **extra))
        logits = logits[:, -n_keep:]  # (R, K, vocab); a no-op when the model honoured logits_to_keep
        keep = torch.from_numpy(scored[:, first_scored:]).to(device)  # (R, K)
        picked = logits[keep]  # (N, vocab): N scored positions over all rows
        picked_targets = torch.from_numpy(targets[:, first_scored:][scored[:, first_scored:]]).to(device)
        row_of_position = torch.from_numpy(np.nonzero(scored[:, first_scored:])[0]).to(device)  # (N,)
    token_logprobs = -F.cross_entropy(picked.float(), picked_targets, reduction="none")  # (N,)
    sums = torch.zeros(n_rows, dtype=torch.float64, device=device)
    return sums.index_add_(0, row_of_position, token_logprobs.double())


def logits_mode(model: torch.nn.Module, device: torch.device) -> str:
    """How to ask `model` for only the logits that are scored.

    "positions": the forward takes a (B, T) boolean `logits_to_keep` and returns (N, vocab) logits
    of the True positions (transformers' `slice_logits_to_keep`); checked on a 3-token probe against
    the full logits, because older models would misread such a tensor (loose tolerance: rounding
    under autocast is not a misreading). Not used on a
    `torch.compile`d model, where its data-dependent shape would break the graph.
    "last": the forward takes an int `logits_to_keep` (the last K positions).
    "all": the forward computes every position's logits.
    """
    if "logits_to_keep" not in _forward_parameters(model):
        return "all"
    if _unwrapped(model) is not model:
        return "last"
    extra = _no_cache_kwargs(model)
    probe = torch.tensor([[0, 1, 2]], device=device)
    keep = torch.tensor([[False, True, True]], device=device)
    try:
        full = output_tensor(model(input_ids=probe, **extra))  # (1, 3, vocab)
        picked = output_tensor(model(input_ids=probe, logits_to_keep=keep, **extra))
    except (IndexError, RuntimeError, TypeError, ValueError):
        return "last"
    same = picked.shape == full[0, 1:].shape and torch.allclose(
        picked.float(), full[0, 1:].float(), rtol=1e-2, atol=1e-2
    )
    return "positions" if same else "last"


def _no_cache_kwargs(model: torch.nn.Module) -> dict[str, Any]:
    """Scoring never reuses keys/values: do not let the model build a cache it would throw away."""
    return {"use_cache": False} if "use_cache" in _forward_parameters(model) else {}


def _collect(
    examples: Sequence[dict[str, Any]], requests: list[EndingRequest], logprob_sums: list[float]
) -> HellaSwagScores:
    n_examples = len(examples)
    logprobs: list[list[float]] = [[] for _ in range(n_examples)]
    tokens: list[list[int]] = [[] for _ in range(n_examples)]
    chars: list[list[int]] = [[] for _ in range(n_examples)]
    for request, value in zip(requests, logprob_sums, strict=True):  # requests are in example order
        logprobs[request.example].append(value)
        tokens[request.example].append(request.n_ending_tokens)
        chars[request.example].append(request.n_chars)
    labels = [int(e["label"]) for e in examples]
    return HellaSwagScores(ending_logprobs=logprobs, ending_tokens=tokens, ending_chars=chars, labels=labels)


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The module under a `torch.compile` wrapper."""
    return getattr(model, "_orig_mod", model)


def _forward_parameters(model: torch.nn.Module) -> set[str]:
    return set(inspect.signature(_unwrapped(model).forward).parameters)


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _max_length(model: torch.nn.Module) -> int | None:
    """The longest input the model accepts, from its config (None when it does not say)."""
    config = getattr(_unwrapped(model), "config", None)
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _pad_id(tokenizer: Any) -> int:
    """Any id will do (padded positions are masked and never scored); prefer the tokenizer's own."""
    pad = getattr(tokenizer, "pad_token_id", None)
    if isinstance(pad, int):
        return pad
    return prefix_token_id(tokenizer) or 0
