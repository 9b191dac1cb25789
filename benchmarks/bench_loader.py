"""TokenLoader throughput, resume latency and memory against the classic in-RAM ``.npy`` loader.

Baseline (the reference GPT-2 reproduction's ``DataLoaderLite``): each uint16 ``.npy`` shard of
100M tokens is loaded whole into memory and converted to an int64 tensor, batches are
``buf[pos : pos + B*T + 1]`` slices. Contender: ``nanogpt2.data.TokenLoader`` reading the same tokens
zero-copy from memory-mapped Arrow shards (sequential, and shuffled blocks).

Two synthetic datasets of random token ids (documents of 50-5000 tokens), 30 MB and 600 MB of
uint16 tokens, are written in both formats. Each measurement runs in a fresh process that reads
``--tokens`` tokens spread over the whole dataset; it reports tokens/s, the process's anonymous
resident memory (``RssAnon``, what the process allocates) and file-backed resident pages
(``RssFile``, the page cache of the memory-mapped shards, reclaimable by the OS), and for
TokenLoader the latency of ``load_state_dict`` to 200 random positions followed by one batch.

Command line::

    python benchmarks/bench_loader.py [--sizes-mb 30 600] [--batch-size 16] [--seq-len 1024] [--tokens 200000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASELINE_SHARD_TOKENS = 100_000_000


def memory_kib() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmRSS"):
            fields[key] = int(value.split()[0])
    return fields


def write_datasets(root: Path, megabytes: float) -> Path:
    """Arrow token folder (prepare_data layout) plus .npy shards of the same stream."""
    import datasets
    import pyarrow as pa
    from datasets import Dataset, Features, List, Value

    from nanogpt2.data.meta import FORMAT, FORMAT_VERSION
    from nanogpt2.utils import write_json

    datasets.disable_progress_bars()
    folder = root / f"tokens-{megabytes:g}mb"
    rng = np.random.default_rng(0)
    total = int(megabytes * 1e6 / 2)
    tokens = rng.integers(0, 50257, size=total, dtype=np.uint16)
    lengths = rng.integers(50, 5000, size=total // 50 + 1)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    offsets = np.append(offsets[offsets < total], total).astype(np.int32)
    table = pa.table({"input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(tokens))})
    dataset = Dataset(table).cast(Features({"input_ids": List(Value("uint16"))}))
    split = {"documents": len(dataset), "tokens": total, "shards": []}
    num_shards = max(1, -(-total // BASELINE_SHARD_TOKENS))
    dataset.save_to_disk(str(folder / "train"), num_shards=num_shards)
    dataset.select(range(10)).save_to_disk(str(folder / "val"))
    write_json(folder / "meta.json", {
        "format": FORMAT, "format_version": FORMAT_VERSION, "complete": True, "tokenizer_hash": "synthetic",
        "eot_id": 50256, "dtype": "uint16", "splits": {"train": split, "val": {"tokens": int(offsets[10])}},
    })
    for index, start in enumerate(range(0, total, BASELINE_SHARD_TOKENS)):
        np.save(folder / f"shard_{index:06d}.npy", tokens[start : start + BASELINE_SHARD_TOKENS])
    return folder


class NpyLoaderLite:
    """The baseline: whole .npy shard in RAM as int64, contiguous (B, T) batches, next shard at the end."""

    def __init__(self, folder: Path, batch_size: int, seq_len: int) -> None:
        import torch

        self.torch = torch
        self.shards = sorted(folder.glob("shard_*.npy"))
        self.B, self.T = batch_size, seq_len
        self.shard = 0
        self.tokens = torch.tensor(np.load(self.shards[0]).astype(np.int32), dtype=torch.long)
        self.position = 0

    def __next__(self):
        B, T = self.B, self.T
        buf = self.tokens[self.position : self.position + B * T + 1]
        x, y = buf[:-1].view(B, T), buf[1:].view(B, T)
        self.position += B * T
        if self.position + B * T + 1 > len(self.tokens):
            self.shard = (self.shard + 1) % len(self.shards)
            self.tokens = self.torch.tensor(np.load(self.shards[self.shard]).astype(np.int32), dtype=self.torch.long)
            self.position = 0
        return x, y


def measure(folder: Path, kind: str, batch_size: int, seq_len: int, tokens: int) -> dict:
    """Runs in a fresh process: read ``tokens`` tokens, report rate, memory and resume latency."""
    import torch

    from nanogpt2.data import TokenLoader

    before = memory_kib()
    if kind == "npy-baseline":
        loader = NpyLoaderLite(folder, batch_size, seq_len)
    else:
        loader = TokenLoader(folder, "train", batch_size, seq_len, shuffle=kind == "tokenloader-shuffled")
    steps = max(1, tokens // (batch_size * seq_len))
    checksum = 0
    start = time.perf_counter()
    for _ in range(steps):
        x, y = next(loader)
        checksum += int(x[0, 0])  # touch the batch
    seconds = time.perf_counter() - start
    result = {"kind": kind, "tokens_per_s": steps * batch_size * seq_len / seconds, "after": memory_kib(),
              "before": before, "checksum": checksum}
    if kind != "npy-baseline":
        rng = np.random.default_rng(1)
        latencies = []
        for _ in range(200):
            state = loader.state_dict() | {
                "epoch": int(rng.integers(0, 100)),
                "position": int(rng.integers(0, loader.steps_per_epoch)) * loader.tokens_per_step,
            }
            begin = time.perf_counter()
            loader.load_state_dict(state)
            loaded = time.perf_counter()
            next(loader)
            latencies.append((loaded - begin, time.perf_counter() - begin))
        load_only, with_batch = np.array(latencies).T * 1e3
        result["resume_ms_mean"], result["resume_ms_max"] = float(load_only.mean()), float(load_only.max())
        result["resume_batch_ms_mean"] = float(with_batch.mean())
        result["resume_batch_ms_max"] = float(with_batch.max())
    del torch
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[30, 600])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=200_000_000, help="tokens read per measurement")
    parser.add_argument("--measure", nargs=2, metavar=("FOLDER", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1], args.batch_size, args.seq_len, args.tokens)))
        return

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"python {platform.python_version()}; B={args.batch_size} T={args.seq_len}; "
          f"{args.tokens:,} tokens read per run")
    header = (f"{'dataset':>8} {'loader':22} {'M tok/s':>9} {'RssAnon MB':>11} {'RssFile MB':>11} "
              f"{'load_state_dict ms':>20} {'+ first batch ms':>18}")
    with tempfile.TemporaryDirectory() as tmp:
        rates: dict[tuple[float, str], float] = {}
        rows = []
        for size in args.sizes_mb:
            folder = write_datasets(Path(tmp), size)
            for kind in ("npy-baseline", "tokenloader", "tokenloader-shuffled"):
                command = [sys.executable, __file__, "--measure", str(folder), kind, "--batch-size",
                           str(args.batch_size), "--seq-len", str(args.seq_len), "--tokens", str(args.tokens)]
                result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                rates[size, kind] = result["tokens_per_s"]
                resume, batch = "-", "-"
                if "resume_ms_mean" in result:
                    resume = f"{result['resume_ms_mean']:.3f} (max {result['resume_ms_max']:.3f})"
                    batch = f"{result['resume_batch_ms_mean']:.2f} (max {result['resume_batch_ms_max']:.2f})"
                rows.append(f"{size:>6g}MB {kind:22} {result['tokens_per_s'] / 1e6:9.1f} "
                            f"{result['after']['RssAnon'] / 1024:11.0f} {result['after']['RssFile'] / 1024:11.0f} "
                            f"{resume:>20} {batch:>18}")
            for path in folder.rglob("*"):
                if path.is_file():
                    path.unlink()
        print(header)
        print("\n".join(rows))
        for size in args.sizes_mb:
            for kind in ("tokenloader", "tokenloader-shuffled"):
                print(f"ratio {kind} / npy-baseline at {size:g} MB: "
                      f"{rates[size, kind] / rates[size, 'npy-baseline']:.2f}x")


if __name__ == "__main__":
    main()
