"""Helpers for the HellaSwag tests: a generated jsonl fixture, a tiny tokenizer, tiny models, and the
plain one-ending-at-a-time scorer that the batched evaluator must reproduce."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import conftest  # tests/ is on sys.path (pytest rootdir, or the worker script's folder)
import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from nanogpt2.evaluation import HellaSwagScores, tokenize_requests

_WORDS = (
    "the man woman dog ball water kitchen knife bread garden slowly quickly then picks up puts down "
    "walks runs jumps over table chair window paints wall rope climbs holds smiles camera talks to "
    "shows how cut onion pan oil salt rinse dry towel shirt iron press button bike wheel"
).split()


def _sentence(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def make_examples(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` HellaSwag-shaped examples in the original release's format (WikiHow-style bracket markers
    in every third one, an empty `ctx_b` in every fifth), with endings of varied lengths."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        ctx_a = _sentence(rng, rng.randint(3, 25)).capitalize() + "."
        ctx_b = "" if i % 5 == 4 else _sentence(rng, rng.randint(1, 3))
        endings = [_sentence(rng, rng.randint(1, 14)) + "." for _ in range(4)]
        if i % 3 == 2:
            ctx_a = "[header] How to " + ctx_a + " [title] " + _sentence(rng, 3) + "."
            endings = [f"[step] {e} [substeps] {_sentence(rng, 2)}." for e in endings]
        examples.append(
            {
                "ind": i,
                "activity_label": _sentence(rng, 2).title(),
                "ctx_a": ctx_a,
                "ctx_b": ctx_b,
                "ctx": f"{ctx_a} {ctx_b}" if ctx_b else ctx_a,
                "split": "val",
                "split_type": "indomain",
                "label": rng.randrange(4),
                "endings": endings,
                "source_id": f"fixture~{i}",
            }
        )
    return examples


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def train_tiny_tokenizer(examples: list[dict[str, Any]], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 style pre-tokenization) trained on the examples' text."""
    texts = []
    for e in examples:
        texts += [e["activity_label"], e["ctx"], *e["endings"]]
    return conftest.train_tiny_tokenizer(texts, vocab_size)


def tiny_gpt2(vocab_size: int, n_positions: int = 256, seed: int = 0) -> GPT2LMHeadModel:
    """A random-init 2-layer GPT-2 (fp32, eval mode not set: the evaluator must do it)."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=48, n_layer=2, n_head=4, attn_implementation="sdpa"
    )
    return GPT2LMHeadModel(config)


def plain_scores(model: torch.nn.Module, tokenizer: Any, examples: list[dict[str, Any]], style: str) -> HellaSwagScores:
    """Every ending scored alone: one unpadded sequence per forward pass, full log-softmax."""
    max_length = model.config.n_positions
    requests = tokenize_requests(examples, tokenizer, style=style, max_length=max_length)
    n = len(examples)
    logprobs: list[list[float]] = [[] for _ in range(n)]
    tokens: list[list[int]] = [[] for _ in range(n)]
    chars: list[list[int]] = [[] for _ in range(n)]
    model.eval()
    with torch.no_grad():
        for req in requests:
            inputs = torch.tensor([req.tokens[:-1]])
            targets = torch.tensor(req.tokens[1:])
            token_logprobs = torch.log_softmax(model(input_ids=inputs).logits[0].float(), dim=-1)
            per_position = token_logprobs[torch.arange(len(targets)), targets]
            logprobs[req.example].append(per_position[-req.n_ending_tokens :].double().sum().item())
            tokens[req.example].append(req.n_ending_tokens)
            chars[req.example].append(req.n_chars)
    return HellaSwagScores(logprobs, tokens, chars, [e["label"] for e in examples])


def predictions(scores: HellaSwagScores) -> dict[str, list[int]]:
    """The chosen ending of every example under each convention (first one on ties)."""
    lp, tok, ch = (
        torch.tensor(x, dtype=torch.float64)
        for x in (scores.ending_logprobs, scores.ending_tokens, scores.ending_chars)
    )
    return {
        "acc": lp.argmax(-1).tolist(),
        "acc_norm": (lp / tok).argmax(-1).tolist(),
        "acc_norm_chars": (lp / ch).argmax(-1).tolist(),
    }
