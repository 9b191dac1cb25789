"""Scoring of causal language models (`nanogpt2.evaluation`); HellaSwag lives in `evaluation/hellaswag/`."""

from .hellaswag import (
    METRIC_KEYS,
    STYLES,
    HellaSwagScores,
    evaluate_hellaswag,
    hellaswag_metric_path,
    load_hellaswag,
    load_hellaswag_metric,
    score_hellaswag,
)

__all__ = [
    "METRIC_KEYS", "STYLES", "HellaSwagScores", "evaluate_hellaswag", "hellaswag_metric_path", "load_hellaswag",
    "load_hellaswag_metric", "score_hellaswag",
]
