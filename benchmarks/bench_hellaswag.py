"""HellaSwag scoring speed: the batched evaluator against a one-example-per-forward loop, same run.

    python benchmarks/bench_hellaswag.py                          # 4-layer model, 200 examples, CPU
    python benchmarks/bench_hellaswag.py --size 124m --limit 100
    python benchmarks/bench_hellaswag.py --size 124m --device cuda --mixed-precision bf16 --limit 0 \
        --data hellaswag_val.jsonl --skip-baseline                # the full validation set on a GPU

The baseline is the straightforward loop (build-nanogpt's): for each example, its four
context + ending rows padded to the longest, one forward pass, log-softmax over all positions.
Both paths start from the same examples and tokenizer and include tokenization. Afterwards the
matmul FLOPs of both paths are counted: their ratio is the speed-up that arithmetic alone allows,
and each path's FLOP rate is printed beside that of one large matmul on the same device.
The model is a random-init `NanoGPT2LMHeadModel` (or `--model DIR`); the data is HellaSwag
validation from `--data` (default: ../shared/hellaswag/hellaswag_val_1000.jsonl when present, else
the Hub).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F

from nanogpt2.evaluation import HellaSwagScores, load_hellaswag, score_hellaswag, tokenize_requests
from nanogpt2.evaluation.token_logprobs import OutputLayer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SIZES = {  # n_layer, n_embd, n_head
    "tiny": (4, 256, 4),
    "small": (6, 384, 6),
    "124m": (12, 768, 12),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="tiny", help="random-init model size (default: tiny)")
    parser.add_argument("--model", help="a saved model folder instead of a random-init one")
    parser.add_argument("--data", help="HellaSwag jsonl (default: ../shared sample, else the Hub)")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: ../shared/gpt2-tokenizer, else the Hub)")
    parser.add_argument("--limit", type=int, default=200, help="examples to score, 0 for all (default: 200)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per forward pass (default: 32)")
    parser.add_argument("--style", choices=("nanogpt", "lm-eval"), default="nanogpt")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mixed-precision", choices=("no", "bf16"), default="no")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model for the batched path")
    parser.add_argument("--skip-baseline", action="store_true", help="time only the batched evaluator")
    parser.add_argument("--profile", action="store_true", help="also print the batched path's top operators")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each path, best kept (default: 3)")
    parser.add_argument(
        "--no-share-context", action="store_true", help="score whole context + ending rows (no packing)"
    )
    return parser.parse_args()


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel

    if args.model:
        from nanogpt2.evaluation.hellaswag_cli import load_causal_lm

        return load_causal_lm(args.model)
    n_layer, n_embd, n_head = SIZES[args.size]
    torch.manual_seed(0)
    config = NanoGPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=50304, tokenizer_vocab_size=50257)
    return NanoGPT2LMHeadModel(config)


def baseline_scores(
    model: torch.nn.Module, tokenizer: Any, examples: list[dict[str, Any]], style: str, device: torch.device
) -> HellaSwagScores:
    """One example per forward pass: its rows padded to the longest, logits at every position."""
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
            ids[i, :n] = torch.tensor(r.tokens[:-1])
            targets[i, :n] = torch.tensor(r.tokens[1:])
            scored[i, n - r.n_ending_tokens : n] = True
        logits = model(input_ids=ids.to(device), attention_mask=(ids != -1).to(device)).logits
        losses = F.cross_entropy(logits.float().flatten(0, 1), targets.to(device).flatten(), reduction="none")
        per_row = (losses.view(len(rows), width) * scored.to(device)).sum(1)
        logprobs.append((-per_row.double()).tolist())
    return HellaSwagScores(
        ending_logprobs=logprobs,
        ending_tokens=[[r.n_ending_tokens for r in rows] for rows in by_example],
        ending_chars=[[r.n_chars for r in rows] for rows in by_example],
        labels=[e["label"] for e in examples],
    )


class MatmulWork:
    """Counts the matmul FLOPs of the forward passes a model runs: 2 * body parameters per input
    token (attention scores ignored: small at these lengths) plus 2 * n_embd * vocab per position
    whose logits are computed, by the model's output layer or by `OutputLayer`'s tiles. Shows how
    much of the speed-up arithmetic alone allows."""

    def __init__(self, model: torch.nn.Module):
        config = model.config
        embeddings = (config.vocab_size + config.n_positions) * config.n_embd
        self.body = 2 * (sum(p.numel() for p in model.parameters()) - embeddings)
        self.flops = 0.0
        model.base_model.register_forward_pre_hook(self._count_body, with_kwargs=True)
        model.get_output_embeddings().register_forward_hook(self._count_head)

    def _count_body(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self.flops += kwargs["input_ids"].numel() * self.body

    def _count_head(self, module: torch.nn.Linear, args: tuple, output: torch.Tensor) -> None:
        self.flops += 2 * args[0].numel() * module.out_features  # positions * n_embd * vocab * 2

    def _counted_normaliser(self, original: Any) -> Any:
        def normaliser(layer: OutputLayer, hidden: torch.Tensor, weight: torch.Tensor, bias: Any) -> torch.Tensor:
            self.flops += 2 * hidden.numel() * weight.shape[0]
            return original(layer, hidden, weight, bias)

        return normaliser

    def measure(self, fn: Any) -> float:
        self.flops = 0.0
        with mock.patch.object(OutputLayer, "_log_normaliser", self._counted_normaliser(OutputLayer._log_normaliser)):
            fn()
        return self.flops


def matmul_rate(device: torch.device, repeat: int = 5) -> float:
    """FLOP/s of a large fp32 matmul (a 124M MLP's shape at 4096 tokens): the rate to compare with."""
    a, b = torch.randn(4096, 768, device=device), torch.randn(768, 3072, device=device)
    a @ b  # warm-up
    seconds = min(timed(lambda: a @ b)[1] for _ in range(repeat))
    return 2 * 4096 * 768 * 3072 / seconds


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
    from transformers import AutoTokenizer

    default_data = SHARED / "hellaswag" / "hellaswag_val_1000.jsonl"
    data = args.data or (str(default_data) if default_data.exists() else None)
    examples = load_hellaswag(data, limit=args.limit or None)
    default_tokenizer = SHARED / "gpt2-tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(
        args.tokenizer or (str(default_tokenizer) if default_tokenizer.exists() else "openai-community/gpt2")
    )
    device = torch.device(args.device)
    model = build_model(args).to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if args.mixed_precision == "bf16"
        else contextlib.nullcontext()
    )
    gpu = f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"device {device}{gpu}, torch {torch.__version__}"
    )
    print(
        f"model: {args.model or args.size} ({n_params / 1e6:.1f}M parameters), data: {data or 'Hub'}, "
        f"{len(examples)} examples, style {args.style}, batch size {args.batch_size}, "
        f"precision {args.mixed_precision}, shared context {not (args.no_share_context or args.compile)}"
    )

    batched_model = torch.compile(model, dynamic=True) if args.compile else model

    def run_batched() -> HellaSwagScores:
        return score_hellaswag(
            batched_model,
            tokenizer,
            examples,
            style=args.style,
            batch_size=args.batch_size,
            progress=False,
            share_context=False if args.no_share_context else None,
        )

    def run_baseline() -> HellaSwagScores:
        with torch.no_grad():
            return baseline_scores(model, tokenizer, examples, args.style, device)

    fast_times, slow_times = [], []
    with autocast:
        if args.compile:  # compile outside the timing
            score_hellaswag(batched_model, tokenizer, examples[: args.batch_size], style=args.style, progress=False)
        # Alternate the two paths and keep each one's best time: other work on a shared machine
        # slows single runs by large and varying amounts.
        for _ in range(args.repeat):
            fast, seconds = timed(run_batched)
            fast_times.append(seconds)
            if not args.skip_baseline:
                slow, seconds = timed(run_baseline)
                slow_times.append(seconds)
    fast_s = min(fast_times)
    print(f"batched evaluator: {fast_s:8.2f} s  {len(examples) / fast_s:9.1f} examples/s  (runs: {_fmt(fast_times)})")
    if args.profile:
        with autocast, torch.profiler.profile() as profile:
            run_batched()
        print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    if args.skip_baseline:
        return
    slow_s = min(slow_times)
    print(f"one example/pass:  {slow_s:8.2f} s  {len(examples) / slow_s:9.1f} examples/s  (runs: {_fmt(slow_times)})")
    print(f"speed-up: {slow_s / fast_s:.2f}x (best of {args.repeat})")
    if not args.compile and hasattr(model.config, "n_embd"):
        work = MatmulWork(model)
        with autocast:
            fast_flops, slow_flops = work.measure(run_batched), work.measure(run_baseline)
        print(
            f"matmul work: batched {fast_flops / 1e12:.2f} TFLOP, one example/pass {slow_flops / 1e12:.2f} TFLOP: "
            f"the speed-up arithmetic allows is {slow_flops / fast_flops:.2f}x"
        )
        peak = matmul_rate(device)
        print(
            f"matmul rate: batched {fast_flops / fast_s / 1e9:.0f} GFLOP/s, one example/pass "
            f"{slow_flops / slow_s / 1e9:.0f} GFLOP/s; a large matmul (4096 x 768 x 3072) on this device "
            f"{peak / 1e9:.0f} GFLOP/s"
        )
    diff = (torch.tensor(fast.ending_logprobs) - torch.tensor(slow.ending_logprobs)).abs().max().item()
    same = torch.tensor(fast.ending_logprobs).argmax(-1).equal(torch.tensor(slow.ending_logprobs).argmax(-1))
    print(f"max |score difference|: {diff:.2e}, same acc predictions: {same}")


def _fmt(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    main()
