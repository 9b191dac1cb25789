"""Score every HellaSwag ending with a causal LM, many examples per forward pass.

Two layouts (`packing`): packed rows (each example's context once, its endings after it under a 4D
mask with position ids) for models known to read such a mask as given, and plain right-padded
context + ending rows for any other causal LM. Either way each score equals the score of the
context + ending sequence run alone. Batches are planned before they are shared among processes
(batch k goes to process k % world_size), so any process count computes the same batches; every
process runs as many forwards as the busiest one, so a sharded (FSDP) model can score too.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ...utils import InputError
from ...utils.models import context_length
from .packing import build_batch, packed_attention_mask, plan_batches
from .requests import EndingRequest, tokenize_requests


@dataclass
class HellaSwagScores:
    """Per-example, per-ending scores: the inputs of the `hellaswag` evaluate metric."""

    ending_logprobs: list[list[float]]  # total log-likelihood of each ending given the context
    ending_tokens: list[list[int]]  # number of scored tokens of each ending
    ending_chars: list[list[int]]  # characters of each ending, separating space not counted
    labels: list[int]

    def metric_inputs(self) -> dict[str, list]:
        """Keyword arguments for `metric.compute(...)`."""
        return {"ending_logprobs": self.ending_logprobs, "ending_tokens": self.ending_tokens,
                "ending_chars": self.ending_chars, "references": self.labels}


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

    `model` is a causal LM whose output has `.logits` (plain or `torch.compile`d); it runs in eval mode
    under `torch.no_grad` (and `accelerator.autocast()` when an Accelerator is given), and its training
    mode is restored afterwards. With an Accelerator of several processes each process scores a disjoint
    share of the batches and the scores are summed across processes.

    `share_context`: pack each example's endings after its context (True) or score plain rows (False);
    None packs for the models that declare they read a 4D mask and position ids as given
    (`reads_packed_rows`).
    """
    if batch_size < 1:
        raise InputError(f"HellaSwag batch_size must be >= 1, got {batch_size}")
    unwrapped = getattr(model, "_orig_mod", model)  # under a torch.compile wrapper
    forward_takes = set(inspect.signature(unwrapped.forward).parameters)
    max_length = context_length(getattr(unwrapped, "config", None))
    requests = tokenize_requests(examples, tokenizer, style=style, max_length=max_length)
    packed = reads_packed_rows(unwrapped) if share_context is None else share_context
    batches = plan_batches(requests, batch_size, share_context=packed)

    rank, world_size = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    device = next(model.parameters()).device
    # Only the scored positions go through the output layer where the forward can be told which.
    keep_logits = "logits_to_keep" in forward_takes
    no_cache = {"use_cache": False} if "use_cache" in forward_takes else {}
    logprob_sums = torch.zeros(len(requests), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), accelerator.autocast() if accelerator else contextlib.nullcontext():
            mine = batches[rank::world_size]
            # Every process runs the same number of forwards: a sharded model's forward (FSDP) is collective.
            # A process with fewer batches scores its first one again, or the first overall, and discards it.
            rounds = -(-len(batches) // world_size)
            repeats = [(mine or batches)[0]] * (rounds - len(mine)) if rounds > len(mine) else []
            for i, rows in enumerate(tqdm(mine + repeats, desc=f"HellaSwag ({style})", unit="batch",
                                          disable=not progress or rank > 0)):
                batch = build_batch(requests, rows)
                inputs = {"input_ids": batch.input_ids.to(device), **no_cache}
                if packed:
                    slots, parts = batch.slots.to(device), batch.parts.to(device)
                    inputs |= {"attention_mask": packed_attention_mask(slots, parts),
                               "position_ids": batch.position_ids.to(device)}
                keep = batch.keep.to(device)  # (B, T)
                if keep_logits:
                    logits = model(**inputs, logits_to_keep=keep).logits  # (N, vocab)
                else:
                    logits = model(**inputs).logits[keep]
                normaliser = torch.logsumexp(logits.float(), dim=-1)  # (N,)
                at, targets = batch.scored_at.to(device), batch.targets.to(device)  # (M,)
                picked = logits[at, targets].float() - normaliser[at]  # (M,): log p(target)
                if i < len(mine):
                    logprob_sums.index_add_(0, batch.owners.to(device), picked.double())
    finally:
        model.train(was_training)
    if world_size > 1:
        # Each request was scored by exactly one process, the others hold 0.0: the sum is exact.
        logprob_sums = accelerator.reduce(logprob_sums, reduction="sum")
    return _collect(examples, requests, logprob_sums.tolist())


def reads_packed_rows(model: torch.nn.Module) -> bool:
    """Whether `model` declares that it reads a 4D boolean attention mask and position ids as given:
    nanogpt2, and transformers' GPT-2 with SDPA attention (its eager attention adds a boolean mask to
    the scores as 0/1 instead of masking)."""
    config = getattr(model, "config", None)
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return False
    model_type = getattr(config, "model_type", None)
    return model_type == "nanogpt2" or (model_type == "gpt2" and config._attn_implementation == "sdpa")


def _collect(examples: Sequence[dict[str, Any]], requests: list[EndingRequest], sums: list[float]) -> HellaSwagScores:
    scores = HellaSwagScores([[] for _ in examples], [[] for _ in examples], [[] for _ in examples],
                             [int(e["label"]) for e in examples])
    for request, value in zip(requests, sums, strict=True):  # requests are in example order
        scores.ending_logprobs[request.example].append(value)
        scores.ending_tokens[request.example].append(request.n_ending_tokens)
        scores.ending_chars[request.example].append(request.n_chars)
    return scores
