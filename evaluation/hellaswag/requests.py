"""A HellaSwag example as a context and its endings in one of two prompt styles, tokenized into one
scoring request per (example, ending).

- `nanogpt`: the context is the example's `ctx`, each continuation `" " + ending`; context and
  continuation are tokenized apart and concatenated (build-nanogpt / llm.c).
- `lm-eval`: lm-evaluation-harness's `hellaswag` task: the context is
  `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`, each continuation
  `" " + preprocess(ending)`, where `preprocess` removes WikiHow's bracket markers; context and
  continuation are tokenized together and split at the context's token count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...utils import InputError

STYLES: tuple[str, ...] = ("nanogpt", "lm-eval")


@dataclass(frozen=True)
class Prompt:
    """What a model scores for one example: `context + continuations[i]`. `endings[i]` is the same text
    without the separating space, whose characters `acc_norm_chars` divides by."""

    context: str
    continuations: list[str]
    endings: list[str]


@dataclass(frozen=True)
class EndingRequest:
    """One ending to score: the model reads `tokens[:-1]`; the last `n_ending_tokens` of `tokens` are the
    ending's, and the sum of their log-probabilities is its score."""

    example: int
    ending: int
    tokens: list[int]
    n_ending_tokens: int
    n_chars: int


def build_prompt(example: dict[str, Any], style: str) -> Prompt:
    """The context and continuations of `example` (a dict from `load_hellaswag`) in `style`."""
    if style not in STYLES:
        raise InputError(f"unknown HellaSwag prompt style {style!r}; choose one of {list(STYLES)}")
    if style == "nanogpt":
        endings = list(example["endings"])
        return Prompt(example["ctx"], [" " + e for e in endings], endings)
    context = lm_eval_preprocess(example["activity_label"] + ": " + example["ctx_a"] + " "
                                 + example["ctx_b"].capitalize())
    endings = [lm_eval_preprocess(e) for e in example["endings"]]
    # lm-eval moves the context's trailing whitespace to the start of each continuation.
    stripped = context.rstrip()
    return Prompt(stripped, [context[len(stripped):] + " " + e for e in endings], endings)


def lm_eval_preprocess(text: str) -> str:
    """lm-evaluation-harness's HellaSwag text cleaning: WikiHow rows carry `[title]`/`[step]` markers."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def tokenize_requests(
    examples: Sequence[dict[str, Any]], tokenizer: Any, *, style: str, max_length: int | None
) -> list[EndingRequest]:
    """Scoring requests for every ending of every example, in example order.

    A sequence longer than `max_length + 1` tokens loses tokens from the left, so that the model reads
    at most `max_length`. An empty context becomes the tokenizer's BOS/EOS token (as in lm-eval).
    """
    encode = _batch_encoder(tokenizer)
    prompts = [build_prompt(example, style) for example in examples]
    context_tokens = encode([p.context for p in prompts])
    texts = [(p.context + c if style == "lm-eval" else c) for p in prompts for c in p.continuations]
    encoded = iter(encode(texts))
    prefix = _prefix_token_id(tokenizer)
    requests: list[EndingRequest] = []
    for i, (prompt, context) in enumerate(zip(prompts, context_tokens, strict=True)):
        for j, ending in enumerate(prompt.endings):
            continuation = list(next(encoded))
            if style == "lm-eval":
                continuation = continuation[len(context):]
            if not continuation:
                raise InputError(f"HellaSwag example {i} ending {j} ({ending!r}) encodes to no tokens")
            if max_length is not None and len(continuation) > max_length:
                raise InputError(f"HellaSwag example {i} ending {j} has {len(continuation)} tokens, more than "
                                 f"the model's maximum length {max_length}")
            if not context and prefix is None:
                raise InputError(f"HellaSwag example {i} has an empty context and the tokenizer has no BOS/EOS")
            tokens = (list(context) or [prefix]) + continuation
            if max_length is not None:
                tokens = tokens[-(max_length + 1):]
            requests.append(EndingRequest(i, j, tokens, len(continuation), len(ending)))
    return requests


def _batch_encoder(tokenizer: Any) -> Callable[[list[str]], list[list[int]]]:
    """Batch encoding without special tokens, for a transformers tokenizer or a tiktoken Encoding."""
    if hasattr(tokenizer, "encode_ordinary_batch"):  # tiktoken
        return tokenizer.encode_ordinary_batch
    return lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def _prefix_token_id(tokenizer: Any) -> int | None:
    """The token that stands for an empty context (lm-eval uses the end-of-text token)."""
    for name in ("bos_token_id", "eos_token_id", "eot_token"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return None
