"""Predict a run before starting it: parameters, FLOPs per token, memory per GPU and time at a given MFU.

    nanogpt2 estimate --config configs/gpt2-1558m.yaml --gpu H100 --num-gpus 8
    nanogpt2 estimate --config configs/gpt2-350m.yaml train.micro_batch_size=16 --gpu 4090 --mfu 0.35
    nanogpt2 estimate --config configs/gpt2-124m.yaml --json

The preset and key=value overrides are those of `nanogpt2 pretrain`. FLOPs per token are the ones the
loop's MFU uses (6N + 12 L d T); the time is FLOPs / (GPUs x the GPU's bf16 peak x --mfu). Memory is
eager PyTorch with AdamW and bf16 autocast (the formula is in `nanogpt2.training.estimate`); leave a few
GiB for the CUDA context and workspaces.
"""

from __future__ import annotations

import argparse
import json

from ..training import load_config
from ..training.estimate import RunEstimate, estimate_run

GIB = 2**30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML preset (configs/*.yaml); none: the defaults (124M)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.max_steps=100")
    parser.add_argument("--gpu", default="H100",
                        help="GPU for the time: H100, A100, L40S, L4, 4090, ... (default: H100)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation to assume (default 0.4)")
    parser.add_argument("--num-gpus", type=int, default=1, help="GPUs training together (default 1)")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.1f} GiB"


def describe(e: RunEstimate) -> str:
    """The estimate as aligned lines for a person."""
    state = _gib(e.state_bytes_ddp) + (f" (DDP), {_gib(e.state_bytes_fsdp)} (FSDP over {e.num_gpus} GPUs)"
                                       if e.num_gpus > 1 else "")
    peak = _gib(e.peak_bytes_ddp) + (f" (DDP), {_gib(e.peak_bytes_fsdp)} (FSDP)" if e.num_gpus > 1 else "")
    if e.steps is None:
        steps = "set by train.epochs from the prepared data (pass train.max_steps=N for the time)"
        time = f"{e.tokens_per_second:,.0f} tokens/s"
    else:
        hours = e.seconds / 3600
        steps = f"{e.steps:,} ({e.total_tokens / 1e9:.1f}B tokens, {e.total_flops:.3g} FLOPs)"
        time = f"{e.tokens_per_second:,.0f} tokens/s, {hours:,.1f} h ({hours * e.num_gpus:,.0f} GPU-hours)"
    checkpointing = ", gradient checkpointing" if e.gradient_checkpointing else ""
    rows = [
        ("parameters", f"{e.params:,} ({e.n_layer} layers, {e.n_head} heads, width {e.n_embd}, "
                       f"context {e.seq_len}, {e.vocab_size} vocabulary rows)"),
        ("FLOPs per token", f"{e.flops_per_token:.4g} (6N + 12 L d T, as the loop's MFU)"),
        ("batch", f"{e.tokens_per_step:,} tokens per step = {e.micro_batch_size} x {e.seq_len} x "
                  f"{e.num_gpus} GPU(s) x {e.grad_accum_steps} micro-step(s)"),
        ("steps", steps),
        ("memory per GPU", f"{e.precision}, micro-batch {e.micro_batch_size} x {e.seq_len}{checkpointing}"),
        ("  weights, grads, AdamW", state),
        ("  weights for compute", _gib(e.compute_weight_bytes)),
        ("  activations", f"{_gib(e.activation_bytes)} saved + {_gib(e.transient_bytes)} transient"),
        ("  peak", peak),
        ("time", f"{e.num_gpus} x {e.gpu} at {e.mfu:.0%} MFU of {e.gpu_peak_flops / 1e12:,.0f} TFLOP/s: {time}"),
    ]
    return "\n".join(f"{name:<26}{value}" for name, value in rows)


def run(args: argparse.Namespace) -> int:
    estimate = estimate_run(load_config(args.config, args.overrides), args.gpu, args.mfu, args.num_gpus)
    print(json.dumps(estimate.to_dict(), indent=2) if args.json else describe(estimate))
    return 0
