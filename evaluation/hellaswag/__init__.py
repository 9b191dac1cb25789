"""HellaSwag: load the examples, score every ending with a causal LM, reduce with the evaluate metric."""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Sequence
from typing import Any

import evaluate
import torch

from .data import describe_source, load_hellaswag, validate_example
from .requests import STYLES, EndingRequest, Prompt, build_prompt, lm_eval_preprocess, tokenize_requests
from .scoring import HellaSwagScores, reads_packed_rows, score_hellaswag

METRIC_KEYS = ("acc", "acc_norm", "acc_norm_chars")


def hellaswag_metric_path() -> str:
    """Folder of the `hellaswag` evaluate module shipped in `nanogpt2.metrics` (works when installed)."""
    return str(importlib.resources.files("nanogpt2.metrics") / "hellaswag")


@functools.cache
def load_hellaswag_metric() -> evaluate.EvaluationModule:
    """The `hellaswag` evaluate metric, kept in memory (no cache files, so processes never collide)."""
    return evaluate.load(hellaswag_metric_path(), keep_in_memory=True)


def evaluate_hellaswag(
    model: torch.nn.Module, tokenizer: Any, examples: Sequence[dict[str, Any]], **options: Any
) -> dict[str, float | int]:
    """`acc`, `acc_norm`, `acc_norm_chars` and `n` of `model` on `examples` (from `load_hellaswag`).

    `options` are `score_hellaswag`'s (`style`, `batch_size`, `accelerator`, `progress`, `share_context`).
    The same on every process when `accelerator` spans several.
    """
    scores = score_hellaswag(model, tokenizer, examples, **options)
    result = load_hellaswag_metric().compute(**scores.metric_inputs())
    return {**{key: float(result[key]) for key in METRIC_KEYS}, "n": int(result["n"])}


__all__ = [
    "METRIC_KEYS", "STYLES", "EndingRequest", "HellaSwagScores", "Prompt", "build_prompt", "describe_source",
    "evaluate_hellaswag", "hellaswag_metric_path", "lm_eval_preprocess", "load_hellaswag", "load_hellaswag_metric",
    "reads_packed_rows", "score_hellaswag", "tokenize_requests", "validate_example",
]
