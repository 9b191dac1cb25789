"""Turn a HellaSwag example into a context and four continuations, in one of two prompt styles.

- `nanogpt`: the context is the example's `ctx` and each continuation is `" " + ending`, as in
  build-nanogpt / llm.c (whose GPT-2 124M acc_norm is 0.2955).
- `lm-eval`: lm-evaluation-harness's `hellaswag` task: the context is
  `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`, each continuation is
  `" " + preprocess(ending)`, where `preprocess` removes the WikiHow bracket artifacts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

Style = Literal["nanogpt", "lm-eval"]
STYLES: tuple[str, ...] = ("nanogpt", "lm-eval")


@dataclass(frozen=True)
class Prompt:
    """What a model scores for one example.

    `continuations[i]` is appended to `context` and scored; `endings[i]` is the same text without
    the separating space, whose characters `acc_norm_chars` divides by.
    """

    context: str
    continuations: list[str]
    endings: list[str]


def check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown HellaSwag prompt style {style!r}; choose one of {list(STYLES)}")


def build_prompt(example: dict[str, Any], style: str) -> Prompt:
    """The context and continuations of `example` (a dict from `load_hellaswag`) in `style`."""
    check_style(style)
    if style == "nanogpt":
        endings = list(example["endings"])
        return Prompt(context=example["ctx"], continuations=[" " + e for e in endings], endings=endings)
    context = lm_eval_preprocess(
        example["activity_label"] + ": " + example["ctx_a"] + " " + example["ctx_b"].capitalize()
    )
    endings = [lm_eval_preprocess(e) for e in example["endings"]]
    return Prompt(context=context, continuations=[" " + e for e in endings], endings=endings)


def lm_eval_preprocess(text: str) -> str:
    """lm-evaluation-harness's HellaSwag text cleaning: WikiHow rows carry `[title]`/`[step]` markers."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")
