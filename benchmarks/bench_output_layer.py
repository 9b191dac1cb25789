"""Scored-token log-probabilities: `OutputLayer`'s tiles against logits-then-logsumexp, same run.

    python benchmarks/bench_output_layer.py                       # 3,200 positions, widths 256 and 768
    python benchmarks/bench_output_layer.py --positions 6400 --widths 768 --tiles 1024x1024 2048x1024

Baseline: what the evaluator does with a model's logits, (N, vocab) = hidden @ weight.T, then
logsumexp over chunks of 8 rows (the fastest chunking on a CPU) and the target logits picked out.
Contender: `OutputLayer.token_logprobs` on the same hidden states and weight, in tiles of
rows x vocabulary entries. GPT-2's vocabulary (50,257), random fp32 data, each timed best of
`--repeat`; prints the ratio and the largest difference.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from functools import partial

import torch

from nanogpt2.evaluation.token_logprobs import OutputLayer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=3200, help="scored positions N (default: 3200)")
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 768], help="hidden sizes (default: 256 768)")
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--tiles", nargs="+", default=["1024x1024"], help="ROWSxVOCAB tile shapes (default: 1024x1024)")
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


def logits_then_logsumexp(hidden: torch.Tensor, weight: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor):
    logits = hidden @ weight.T  # (N, V)
    normaliser = torch.cat([torch.logsumexp(chunk, dim=-1) for chunk in logits.split(8)])  # (N,)
    return logits[rows, targets] - normaliser[rows]


def best_time(fn, repeat: int) -> tuple[torch.Tensor, float]:
    result, times = fn(), []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, min(times)


def main() -> None:
    args = parse_args()
    threads = torch.get_num_threads()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {threads} torch threads, torch {torch.__version__}")
    generator = torch.Generator().manual_seed(0)
    for width in args.widths:
        hidden = torch.randn(args.positions, width, generator=generator)  # (N, C)
        weight = torch.randn(args.vocab, width, generator=generator) / width**0.5  # (V, C): logits ~ N(0, 1)
        rows = torch.arange(args.positions)
        targets = torch.randint(0, args.vocab, (args.positions,), generator=generator)
        with torch.no_grad():
            want, base_s = best_time(partial(logits_then_logsumexp, hidden, weight, rows, targets), args.repeat)
            print(f"N={args.positions} C={width} V={args.vocab}: logits then logsumexp {base_s:.3f} s")
            for tile in args.tiles:
                layer = OutputLayer(torch.nn.Identity(), weight, None)
                layer.rows_per_tile, layer.vocab_per_tile = (int(x) for x in tile.split("x"))
                got, tiled_s = best_time(partial(layer.token_logprobs, hidden, rows, targets), args.repeat)
                diff = (got - want).abs().max().item()
                print(f"  tiles {tile:>10}: {tiled_s:.3f} s, {base_s / tiled_s:.2f}x, max |difference| {diff:.1e}")


if __name__ == "__main__":
    main()
