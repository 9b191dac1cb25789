"""Helpers for the HellaSwag tests: generated examples in the original jsonl format, tiny models, and the
one-ending-at-a-time scorer that the batched evaluator must reproduce."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from conftest import generated_documents  # tests/ is on sys.path (pytest rootdir, or the worker script's folder)
from transformers import GPT2Config, GPT2LMHeadModel

from nanogpt2.evaluation import HellaSwagScores
from nanogpt2.evaluation.hellaswag import tokenize_requests
from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel

# The words of the tiny tokenizer's corpus, so that they encode to few tokens.
WORDS = sorted(set(" ".join(generated_documents(60)).replace(".", "").lower().split()))


def _sentence(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def make_examples(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` HellaSwag-shaped examples in the original release's format (WikiHow-style bracket markers in
    every third one, an empty `ctx_b` in every fifth), with endings of varied lengths."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        ctx_a = _sentence(rng, rng.randint(3, 25)).capitalize() + "."
        ctx_b = "" if i % 5 == 4 else _sentence(rng, rng.randint(1, 3))
        endings = [_sentence(rng, rng.randint(1, 14)) + "." for _ in range(4)]
        if i % 3 == 2:
            ctx_a = "[header] How to " + ctx_a + " [title] " + _sentence(rng, 3) + "."
            endings = [f"[step] {e} [substeps] {_sentence(rng, 2)}." for e in endings]
        examples.append({
            "ind": i, "activity_label": _sentence(rng, 2).title(), "ctx_a": ctx_a, "ctx_b": ctx_b,
            "ctx": f"{ctx_a} {ctx_b}" if ctx_b else ctx_a, "split": "val", "split_type": "indomain",
            "label": rng.randrange(4), "endings": endings, "source_id": f"fixture~{i}",
        })
    return examples


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def tiny_gpt2(vocab_size: int, n_positions: int = 256, seed: int = 0, attention: str = "sdpa") -> GPT2LMHeadModel:
    """A random-init 2-layer transformers GPT-2 (fp32; eval mode not set: the evaluator must do it)."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=48, n_layer=2, n_head=4,
                        attn_implementation=attention, bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    return GPT2LMHeadModel(config)


def tiny_nanogpt2(vocab_size: int, n_positions: int = 256, seed: int = 0) -> NanoGPT2LMHeadModel:
    """A random-init 2-layer nanogpt2 whose vocabulary is padded by 13 rows that are never predicted."""
    torch.manual_seed(seed)
    config = NanoGPT2Config(vocab_size=vocab_size + 13, tokenizer_vocab_size=vocab_size, n_positions=n_positions,
                            n_embd=48, n_layer=2, n_head=4, bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    return NanoGPT2LMHeadModel(config)


def plain_scores(model: torch.nn.Module, tokenizer: Any, examples: list[dict[str, Any]], style: str) -> HellaSwagScores:
    """Every ending scored alone: one unpadded sequence per forward pass, full log-softmax."""
    requests = tokenize_requests(examples, tokenizer, style=style, max_length=model.config.n_positions)
    scores = HellaSwagScores([[] for _ in examples], [[] for _ in examples], [[] for _ in examples],
                             [e["label"] for e in examples])
    model.eval()
    with torch.no_grad():
        for req in requests:
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([req.tokens[:-1]])).logits[0].float(), dim=-1)
            targets = torch.tensor(req.tokens[1:])
            per_position = logprobs[torch.arange(len(targets)), targets]
            scores.ending_logprobs[req.example].append(per_position[-req.n_ending_tokens:].double().sum().item())
            scores.ending_tokens[req.example].append(req.n_ending_tokens)
            scores.ending_chars[req.example].append(req.n_chars)
    return scores


def predictions(scores: HellaSwagScores) -> dict[str, list[int]]:
    """The chosen ending of every example under each convention (first one on ties)."""
    lp, tok, ch = (torch.tensor(x, dtype=torch.float64)
                   for x in (scores.ending_logprobs, scores.ending_tokens, scores.ending_chars))
    return {"acc": lp.argmax(-1).tolist(), "acc_norm": (lp / tok).argmax(-1).tolist(),
            "acc_norm_chars": (lp / ch).argmax(-1).tolist()}


def assert_same_scores(batched: HellaSwagScores, plain: HellaSwagScores, atol: float = 1e-4) -> None:
    assert (batched.ending_tokens, batched.ending_chars, batched.labels) == \
        (plain.ending_tokens, plain.ending_chars, plain.labels)
    got, want = torch.tensor(batched.ending_logprobs), torch.tensor(plain.ending_logprobs)
    torch.testing.assert_close(got, want, atol=atol, rtol=0, check_dtype=False)
    assert predictions(batched) == predictions(plain)
