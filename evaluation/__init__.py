"""Scoring of causal language models (`nanogpt2.evaluation`): HellaSwag (`evaluation/hellaswag/`) and chat replies."""

from .chat import Reply, chat_replies, end_of_turn_rate
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
    "load_hellaswag_metric", "score_hellaswag", "Reply", "chat_replies", "end_of_turn_rate",
]
