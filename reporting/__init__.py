"""nanogpt2.reporting: what a run shows a person: plots, throughput summaries, reference results.

Reads a run folder's files (metrics.jsonl, config.yaml, the data's meta.json); never imports training.
"""

from .plots import write_run_plots
from .references import (
    GPT2_124M_HELLASWAG,
    GPT3_SMALL_HELLASWAG,
    HELLASWAG_CHANCE,
    REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS,
    REPRODUCTION_4090_HELLASWAG,
)
from .throughput import summarize_throughput

__all__ = [
    "GPT2_124M_HELLASWAG",
    "GPT3_SMALL_HELLASWAG",
    "HELLASWAG_CHANCE",
    "REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS",
    "REPRODUCTION_4090_HELLASWAG",
    "summarize_throughput",
    "write_run_plots",
]
