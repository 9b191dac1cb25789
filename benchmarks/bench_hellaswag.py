"""HellaSwag scoring speed: the batched evaluator against a one-example-per-forward loop, same run.

    python benchmarks/bench_hellaswag.py --limit 500                      # 4-layer model, CPU
    python benchmarks/bench_hellaswag.py --size 124m --limit 256
    python benchmarks/bench_hellaswag.py --size 124m --device cuda --mixed-precision bf16 --limit 0 \\
        --batch-size 128 --data hellaswag_val.jsonl --skip-baseline      # the whole file on a GPU

The baseline is build-nanogpt's loop: for each example, its four context + ending rows padded to the
longest, one forward pass, log-softmax at every position. Both paths start from the same examples and
tokenizer and include tokenization; they alternate and each keeps its best time. The matmul FLOPs of
both are counted too (2 x body parameters per input token, 2 x n_embd x vocab per position that goes
through the output layer): their ratio is the speed-up that arithmetic alone allows. The model is a
random-init `NanoGPT2LMHeadModel` (vocabulary padded to 50304) or `--model DIR`; the data is
`--data`, else ../shared/hellaswag/hellaswag_val_1000.jsonl when present, else the Hub.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from nanogpt2.evaluation import HellaSwagScores, load_hellaswag, score_hellaswag
from nanogpt2.evaluation.hellaswag import tokenize_requests
from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel
from nanogpt2.utils.models import load_model_and_tokenizer

SHARED = Path(__file__).resolve().parents[2] / "shared"
SIZES = {"tiny": (4, 256, 4), "124m": (12, 768, 12)}  # n_layer, n_embd, n_head


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="tiny", help="random-init model size (default: tiny)")
    parser.add_argument("--model", help="a saved model folder or Hub id instead of a random-init model")
    parser.add_argument("--data", help="HellaSwag jsonl (default: ../shared sample, else the Hub)")
    parser.add_argument("--limit", type=int, default=200, help="examples to score, 0 for all (default: 200)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per forward pass (default: 32)")
    parser.add_argument("--style", choices=("nanogpt", "lm-eval"), default="nanogpt")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mixed-precision", choices=("no", "bf16"), default="no")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model for the batched path")
    parser.add_argument("--no-share-context", action="store_true", help="plain context + ending rows, no packing")
    parser.add_argument("--skip-baseline", action="store_true", help="time only the batched evaluator")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each path, best kept (default: 2)")
    return parser.parse_args()


def load(args: argparse.Namespace) -> tuple[torch.nn.Module, Any]:
    if args.model:
        return load_model_and_tokenizer(args.model)
    n_layer, n_embd, n_head = SIZES[args.size]
    torch.manual_seed(0)
    config = NanoGPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=50304, tokenizer_vocab_size=50257)
    tokenizer_dir = SHARED / "gpt2-tokenizer"
    return NanoGPT2LMHeadModel(config), AutoTokenizer.from_pretrained(
        tokenizer_dir if tokenizer_dir.exists() else "openai-community/gpt2")


def baseline_scores(model: torch.nn.Module, tokenizer: Any, examples: list[dict], style: str) -> HellaSwagScores:
    """One example per forward pass: its rows padded to the longest, logits at every position."""
    device = next(model.parameters()).device
    requests = tokenize_requests(examples, tokenizer, style=style, max_length=model.config.n_positions)
    by_example: list[list] = [[] for _ in examples]
    for request in requests:
        by_example[request.example].append(request)
    logprobs = []
    for rows in by_example:
        width = max(len(r.tokens) for r in rows) - 1
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        targets = torch.zeros_like(ids)
        scored = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, r in enumerate(rows):
            n = len(r.tokens) - 1
            ids[i, :n], targets[i, :n] = torch.tensor(r.tokens[:-1]), torch.tensor(r.tokens[1:])
            scored[i, n - r.n_ending_tokens:n] = True
        logits = model(input_ids=ids.to(device)).logits  # right padding: real tokens never see it
        losses = F.cross_entropy(logits.float().flatten(0, 1), targets.to(device).flatten(), reduction="none")
        logprobs.append((-(losses.view(len(rows), width) * scored.to(device)).sum(1).double()).tolist())
    return HellaSwagScores(logprobs, [[r.n_ending_tokens for r in rows] for rows in by_example],
                           [[r.n_chars for r in rows] for rows in by_example], [e["label"] for e in examples])


def matmul_flops(model: torch.nn.Module, fn: Any) -> float:
    """Matmul FLOPs of the forward passes `fn` runs (attention scores left out: small at these lengths)."""
    config, total = model.config, 0.0
    body = 2 * (sum(p.numel() for p in model.parameters()) - (config.vocab_size + config.n_positions) * config.n_embd)

    def count_body(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        nonlocal total
        total += kwargs["input_ids"].numel() * body

    def count_head(module: torch.nn.Linear, args: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += 2 * args[0].numel() * module.out_features  # positions x n_embd x vocab x 2

    hooks = [model.base_model.register_forward_pre_hook(count_body, with_kwargs=True),
             model.get_output_embeddings().register_forward_hook(count_head)]
    with torch.no_grad():
        fn()
    for hook in hooks:
        hook.remove()
    return total


def timed(fn: Any) -> tuple[Any, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    default_data = SHARED / "hellaswag" / "hellaswag_val_1000.jsonl"
    data = args.data or (str(default_data) if default_data.exists() else None)
    examples = load_hellaswag(data, limit=args.limit or None)
    model, tokenizer = load(args)
    device = torch.device(args.device)
    model = model.to(device).eval()
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.mixed_precision == "bf16"
                else contextlib.nullcontext())
    gpu = f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
          f"load average {os.getloadavg()[0]:.1f}, device {device}{gpu}, torch {torch.__version__}")
    print(f"model: {args.model or args.size} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), "
          f"data: {data or 'Hub'}, {len(examples)} examples, style {args.style}, batch size {args.batch_size}, "
          f"precision {args.mixed_precision}, compile {args.compile}, packed {not args.no_share_context}")

    batched_model = torch.compile(model, dynamic=True) if args.compile else model

    def run_batched() -> HellaSwagScores:
        return score_hellaswag(batched_model, tokenizer, examples, style=args.style, batch_size=args.batch_size,
                               progress=False, share_context=False if args.no_share_context else None)

    def run_baseline() -> HellaSwagScores:
        with torch.no_grad():
            return baseline_scores(model, tokenizer, examples, args.style)

    fast_times, slow_times = [], []
    with autocast:
        if args.compile:  # compile outside the timing
            score_hellaswag(batched_model, tokenizer, examples[:args.batch_size], style=args.style, progress=False)
        for _ in range(args.repeat):  # alternate: a slow spell of a shared machine weighs on both
            fast, seconds = timed(run_batched)
            fast_times.append(seconds)
            if not args.skip_baseline:
                slow, seconds = timed(run_baseline)
                slow_times.append(seconds)
    fast_s = min(fast_times)
    print(f"batched evaluator: {fast_s:8.2f} s {len(examples) / fast_s:8.1f} examples/s  (runs: {_fmt(fast_times)})")
    if args.skip_baseline:
        return
    slow_s = min(slow_times)
    print(f"one example/pass:  {slow_s:8.2f} s {len(examples) / slow_s:8.1f} examples/s  (runs: {_fmt(slow_times)})")
    print(f"speed-up: {slow_s / fast_s:.2f}x (best of {args.repeat})")
    if not args.compile:
        with autocast:
            fast_flops, slow_flops = matmul_flops(model, run_batched), matmul_flops(model, run_baseline)
        print(f"matmul work: batched {fast_flops / 1e12:.2f} TFLOP, one example/pass {slow_flops / 1e12:.2f} TFLOP: "
              f"arithmetic allows {slow_flops / fast_flops:.2f}x")
    got, want = torch.tensor(fast.ending_logprobs), torch.tensor(slow.ending_logprobs)
    print(f"max |score difference|: {(got - want).abs().max().item():.2e}, "
          f"same acc predictions: {got.argmax(-1).equal(want.argmax(-1))}")


def _fmt(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    main()
