"""HellaSwag evaluation of a causal LM: score the endings, then reduce with the `hellaswag` metric."""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Sequence
from typing import Any

import evaluate
import torch

from .hellaswag_scoring import score_hellaswag

METRIC_KEYS = ("acc", "acc_norm", "acc_norm_chars")


def hellaswag_metric_path() -> str:
    """Folder of the `hellaswag` evaluate module shipped in `nanogpt2.metrics` (works when installed)."""
    return str(importlib.resources.files("nanogpt2.metrics") / "hellaswag")


@functools.cache
def load_hellaswag_metric() -> evaluate.EvaluationModule:
    """The `hellaswag` evaluate metric, kept in memory (no cache files, so processes never collide)."""
    return evaluate.load(hellaswag_metric_path(), keep_in_memory=True)


def evaluate_hellaswag(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[dict[str, Any]],
    *,
    style: str = "nanogpt",
    batch_size: int = 32,
    accelerator: Any = None,
    progress: bool = True,
) -> dict[str, float | int]:
    """`acc`, `acc_norm`, `acc_norm_chars` and `n` of `model` on `examples` (from `load_hellaswag`).

    Same on every process when `accelerator` spans several; see `score_hellaswag` for the rest.
    """
    scores = score_hellaswag(
        model,
        tokenizer,
        examples,
        style=style,
        batch_size=batch_size,
        accelerator=accelerator,
        progress=progress,
    )
    result = load_hellaswag_metric().compute(**scores.metric_inputs())
    return {**{key: float(result[key]) for key in METRIC_KEYS}, "n": int(result["n"])}
