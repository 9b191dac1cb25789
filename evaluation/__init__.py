"""HellaSwag evaluation of causal language models (`nanogpt2.evaluation`)."""

from .hellaswag import (
    METRIC_KEYS,
    evaluate_hellaswag,
    hellaswag_metric_path,
    load_hellaswag_metric,
)
from .hellaswag_data import describe_source, load_hellaswag, validate_example
from .hellaswag_prompts import STYLES, Prompt, build_prompt, lm_eval_preprocess
from .hellaswag_scoring import HellaSwagScores, score_hellaswag
from .hellaswag_tokenize import EndingRequest, tokenize_requests

__all__ = [
    "METRIC_KEYS",
    "STYLES",
    "EndingRequest",
    "HellaSwagScores",
    "Prompt",
    "build_prompt",
    "describe_source",
    "evaluate_hellaswag",
    "hellaswag_metric_path",
    "lm_eval_preprocess",
    "load_hellaswag",
    "load_hellaswag_metric",
    "score_hellaswag",
    "tokenize_requests",
    "validate_example",
]
