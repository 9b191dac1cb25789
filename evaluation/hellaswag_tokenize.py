"""Tokenize HellaSwag prompts into one scoring request per (example, ending)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .hellaswag_prompts import Prompt, build_prompt, check_style

Encoder = Callable[[list[str]], list[list[int]]]


@dataclass(frozen=True)
class EndingRequest:
    """One ending to score: the model reads `tokens[:-1]` and the last `n_ending_tokens` targets
    (`tokens[1:]`) are the ending's tokens, whose log-probabilities are summed."""

    example: int
    ending: int
    tokens: list[int]
    n_ending_tokens: int
    n_chars: int


def make_encoder(tokenizer: Any) -> Encoder:
    """A batch encoder without special tokens, for a transformers tokenizer or a tiktoken Encoding."""
    if hasattr(tokenizer, "encode_ordinary_batch"):  # tiktoken
        return lambda texts: tokenizer.encode_ordinary_batch(texts)
    return lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def prefix_token_id(tokenizer: Any) -> int | None:
    """The token that stands for an empty context (lm-eval uses the end-of-text token)."""
    for name in ("bos_token_id", "eos_token_id", "eot_token"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return None


def tokenize_requests(
    examples: Sequence[dict[str, Any]],
    tokenizer: Any,
    *,
    style: str,
    max_length: int | None,
) -> list[EndingRequest]:
    """Scoring requests for every ending of every example, in example order.

    nanogpt style: context and `" " + ending` are encoded separately and concatenated
    (build-nanogpt). lm-eval style: trailing spaces of the context move to the continuation,
    context + continuation are encoded together and split at `len(encode(context))`
    (lm-evaluation-harness). Either way a sequence longer than `max_length + 1` tokens loses
    tokens from the left, so the model reads at most `max_length` tokens.
    """
    check_style(style)
    encode = make_encoder(tokenizer)
    prompts = [build_prompt(example, style) for example in examples]
    if style == "lm-eval":
        prompts = [_move_trailing_spaces(p) for p in prompts]
    context_tokens = encode([p.context for p in prompts])
    texts = [(p.context + c if style == "lm-eval" else c) for p in prompts for c in p.continuations]
    encoded = iter(encode(texts))

    prefix = prefix_token_id(tokenizer)
    requests: list[EndingRequest] = []
    for i, (prompt, ctx) in enumerate(zip(prompts, context_tokens, strict=True)):
        for j, ending in enumerate(prompt.endings):
            whole_or_ending = next(encoded)
            ctx_ids = list(ctx)
            if style == "lm-eval":
                cont_ids = list(whole_or_ending[len(ctx_ids) :])
            else:
                cont_ids = list(whole_or_ending)
            if not ctx_ids:
                # Nothing to condition the first ending token on: start from the prefix token.
                if prefix is None:
                    raise ValueError(f"example {i} has an empty context and the tokenizer has no BOS/EOS")
                ctx_ids = [prefix]
            if not cont_ids:
                raise ValueError(f"example {i} ending {j} ({ending!r}) encodes to no tokens")
            tokens = ctx_ids + cont_ids
            if max_length is not None and len(tokens) > max_length + 1:
                if len(cont_ids) > max_length:
                    raise ValueError(
                        f"example {i} ending {j} has {len(cont_ids)} tokens, more than the model's "
                        f"maximum length {max_length}"
                    )
                tokens = tokens[-(max_length + 1) :]
            requests.append(
                EndingRequest(example=i, ending=j, tokens=tokens, n_ending_tokens=len(cont_ids), n_chars=len(ending))
            )
    return requests


def _move_trailing_spaces(prompt: Prompt) -> Prompt:
    """lm-eval moves the context's trailing whitespace to the start of each continuation."""
    stripped = prompt.context.rstrip()
    trailing = prompt.context[len(stripped) :]
    if not trailing:
        return prompt
    return Prompt(
        context=stripped,
        continuations=[trailing + c for c in prompt.continuations],
        endings=prompt.endings,
    )
