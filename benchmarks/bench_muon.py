"""Muon against AdamW through the real loop: same model, corpus, token budget; a small LR sweep for each.

    python benchmarks/bench_muon.py                                   # 5-15 min on 2 CPU cores, with load
    python benchmarks/bench_muon.py --steps 60 --adamw-lrs 3e-3 --muon-lrs 0.02 --plot ""   # a quick look

The corpus is ../shared's FineWeb-Edu sample (the first 1,000,000 characters of `sample-10BT`,
cut into 50-line documents), tokenized with a GPT-2-style byte-level BPE of `--vocab-size` ids
trained on it (0: GPT-2's own tokenizer, whose 50,257-row output layer would dominate a CPU run of
this size); the model is `--n-layer` x `--n-embd` GPT-2 with that padded
vocabulary. AdamW runs first at each of `--adamw-lrs`; Muon then runs at each of `--muon-lrs`
(`train.muon_lr`, the hidden matrices) with the best AdamW LR for its AdamW groups (embeddings,
biases, LayerNorms), so the comparison isolates the matrices' optimizer. Every run has the same
seed, data order, warmup and cosine schedule. Prints a table of final validation losses, the
tokens each Muon run needs to reach the best AdamW run's final validation loss (linear
interpolation between evaluations), writes every curve as JSON and plots validation loss against
tokens (`--plot`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nanogpt2.data import load_data_tokenizer, prepare_data
from nanogpt2.data.train_tokenizer import train_byte_level_bpe
from nanogpt2.training import load_config, train
from nanogpt2.utils import read_jsonl

SHARED = Path(__file__).resolve().parents[2] / "shared"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(SHARED / "corpora" / "fineweb_edu_sample.txt"))
    parser.add_argument("--tokenizer", default=str(SHARED / "gpt2-tokenizer"), help="used when --vocab-size is 0")
    parser.add_argument("--vocab-size", type=int, default=4096,
                        help="train a GPT-2-style byte-level BPE of this size on the corpus (0: --tokenizer)")
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per step (one micro-step)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--val-tokens", type=int, default=8192)
    parser.add_argument("--adamw-lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--muon-lrs", type=float, nargs="+", default=[0.005, 0.01, 0.02])
    parser.add_argument("--out", default="", help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--json", default="docs/bench_muon.json", help="curves as JSON ('' to skip)")
    parser.add_argument("--plot", default="docs/bench_muon.png", help="PNG of the curves ('' to skip)")
    return parser.parse_args()


def run_one(args: argparse.Namespace, data: Path, out: Path, overrides: list[str]) -> dict:
    """One training run through `nanogpt2.training.train`; returns its validation curve and wall time."""
    tokens_per_step = args.batch_size * args.seq_len
    config = load_config(None, [
        f"data.path={data}", f"out_dir={out}", "seed=1337",
        f"model.n_layer={args.n_layer}", f"model.n_head={max(1, args.n_embd // 64)}", f"model.n_embd={args.n_embd}",
        f"model.seq_len={args.seq_len}", f"model.vocab_size={args.model_vocab_size}",
        f"train.micro_batch_size={args.batch_size}",
        f"train.total_batch_tokens={tokens_per_step}", f"train.max_steps={args.steps}",
        f"train.warmup_steps={args.warmup_steps}", "train.mixed_precision=no",
        f"eval.every={args.eval_every}", f"eval.val_tokens={args.val_tokens}", "eval.hellaswag=false",
        "eval.num_samples=0", f"checkpoint.every={args.steps * 10}", "checkpoint.keep_last=1", "logging.tracker=none",
        *overrides,
    ])
    start = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - start
    records = read_jsonl(out / "metrics.jsonl")
    curve = [(r["tokens"], r["val_loss"]) for r in records if "val_loss" in r]
    return {"overrides": overrides, "curve": curve, "final_val_loss": curve[-1][1], "seconds": seconds}


def tokens_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """First token count where the validation curve reaches `target` (linear between evaluations), else None."""
    previous = None
    for tokens, loss in curve:
        if loss <= target:
            if previous is None:
                return float(tokens)
            t0, l0 = previous
            return t0 + (tokens - t0) * (l0 - target) / (l0 - loss)
        previous = (tokens, loss)
    return None


def plot(results: dict[str, dict], path: str) -> None:
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, result in results.items():
        tokens, losses = zip(*result["curve"], strict=True)
        ax.plot(tokens, losses, marker="o", markersize=3, label=label,
                linestyle="-" if label.startswith("muon") else "--")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation loss")
    ax.set_title("Muon vs AdamW (same model, data, tokens; CPU)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"load average before: {os.getloadavg()}")
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_muon_"))
    # The sample runs documents together on 4,164 lines: cut it into 50-line documents so that the
    # validation split (the last documents) is text the runs never train on.
    lines = Path(args.corpus).read_text().splitlines()
    corpus = root / "corpus.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    documents = ["\n".join(lines[i:i + 50]) for i in range(0, len(lines), 50)]
    corpus.write_text("".join(json.dumps({"text": document}) + "\n" for document in documents))
    tokenizer = args.tokenizer
    if args.vocab_size:  # GPT-2's 50,257-row output layer would cost more than the whole 4 x 128 body on a CPU
        tokenizer = train_byte_level_bpe(lines, args.vocab_size, root / "tokenizer")
    data = prepare_data([str(corpus)], root / "data", tokenizer=tokenizer, val_tokens=args.val_tokens, verbose=False)
    args.model_vocab_size = -(-len(load_data_tokenizer(data)) // 64) * 64  # padded to a multiple of 64, like 50304
    meta = json.loads((data / "meta.json").read_text())
    print(f"data: {meta.get('splits', meta)}")
    results: dict[str, dict] = {}
    for lr in args.adamw_lrs:
        results[f"adamw lr={lr:g}"] = run_one(args, data, root / f"adamw_{lr:g}", [f"train.lr={lr}"])
    best_adamw = min((r for k, r in results.items() if k.startswith("adamw")), key=lambda r: r["final_val_loss"])
    best_adamw_lr = best_adamw["overrides"][0].split("=")[1]
    for lr in args.muon_lrs:
        overrides = [f"train.lr={best_adamw_lr}", "train.optimizer=muon", f"train.muon_lr={lr}"]
        results[f"muon muon_lr={lr:g}"] = run_one(args, data, root / f"muon_{lr:g}", overrides)
    target = best_adamw["final_val_loss"]
    print(f"load average after: {os.getloadavg()}")
    print(f"\n| run | final val loss | tokens to reach {target:.4f} (best AdamW final) | wall s |")
    print("| --- | --- | --- | --- |")
    for label, result in results.items():
        reach = tokens_to_reach(result["curve"], target)
        result["tokens_to_best_adamw"] = reach
        print(f"| {label} | {result['final_val_loss']:.4f} | {'not reached' if reach is None else f'{reach:,.0f}'} "
              f"| {result['seconds']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
