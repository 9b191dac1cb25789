"""Data preparation throughput: ``nanogpt2.data.prepare_data`` against the classic tiktoken baseline.

Baseline (the reference GPT-2 reproduction's FineWeb script): ``[EOT] + encode_ordinary(text)`` with
tiktoken's GPT-2 encoding in ``multiprocessing.Pool(N).imap(..., chunksize=16)``, written as
uint16 ``.npy`` shards of 100M tokens. Contender: ``prepare_data(num_proc=N)``, which writes
memory-mapped Arrow shards, a validation split, the tokenizer copy and ``meta.json``.

Both read the same jsonl file (FineWeb-Edu documents from ../shared, repeated to the requested size)
and are timed end to end after imports. The runs alternate and each side's best is compared; the
token streams must be identical (checked), and the ratio contender/baseline is printed.

The GPT-2 baseline encoding is built by tiktoken's own GPT-2 loader from ../shared/gpt2-tokenizer's
``merges.txt``/``vocab.json`` (the files tiktoken's ``gpt2`` encoding uses, which it cannot download here).

Command line::

    python benchmarks/bench_prepare.py [--megabytes 55] [--num-proc 2] [--repeats 2] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE_SHARD_TOKENS = 100_000_000
_encoding = None  # per-process tiktoken encoding of the baseline workers


def gpt2_tiktoken_encoding(tokenizer_dir: Path):
    """tiktoken's GPT-2 encoding from local ``merges.txt`` (vocab.bpe) and ``vocab.json`` (encoder.json)."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    ranks = data_gym_to_mergeable_bpe_ranks(str(tokenizer_dir / "merges.txt"), str(tokenizer_dir / "vocab.json"))
    return tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def _init_worker(tokenizer_dir: Path) -> None:
    global _encoding
    _encoding = gpt2_tiktoken_encoding(tokenizer_dir)


def _baseline_tokenize(document: dict) -> np.ndarray:
    tokens = [_encoding.eot_token]
    tokens.extend(_encoding.encode_ordinary(document["text"]))
    array = np.array(tokens)
    assert (array >= 0).all() and (array < 2**16).all(), "token id does not fit uint16"
    return array.astype(np.uint16)


def _jsonl_documents(path: Path):
    with path.open(encoding="utf-8") as file:
        for line in file:
            yield json.loads(line)


def run_baseline(jsonl: Path, out_dir: Path, tokenizer_dir: Path, num_proc: int) -> int:
    """Pool.imap tokenization into uint16 .npy shards; returns the number of tokens written."""
    shard = np.empty(BASELINE_SHARD_TOKENS, dtype=np.uint16)
    filled = shard_index = total = 0
    with multiprocessing.Pool(num_proc, initializer=_init_worker, initargs=(tokenizer_dir,)) as pool:
        for tokens in pool.imap(_baseline_tokenize, _jsonl_documents(jsonl), chunksize=16):
            total += len(tokens)
            while len(tokens):
                take = min(len(tokens), BASELINE_SHARD_TOKENS - filled)
                shard[filled : filled + take] = tokens[:take]
                filled += take
                tokens = tokens[take:]
                if filled == BASELINE_SHARD_TOKENS:
                    np.save(out_dir / f"shard_{shard_index:06d}.npy", shard)
                    shard_index, filled = shard_index + 1, 0
    if filled:
        np.save(out_dir / f"shard_{shard_index:06d}.npy", shard[:filled])
    return total


def run_prepare(jsonl: Path, out_dir: Path, tokenizer_dir: Path, num_proc: int) -> int:
    from nanogpt2.data import load_meta, prepare_data

    prepare_data([str(jsonl)], out_dir, tokenizer=tokenizer_dir, num_proc=num_proc, val_tokens=1_048_576,
                 verbose=False)
    return int(load_meta(out_dir)["tokens"])


def _prepared_stream(out_dir: Path) -> np.ndarray:
    from datasets import load_from_disk

    parts = []
    for split in ("val", "train"):  # validation documents come first in the source order
        column = load_from_disk(str(out_dir / split)).data.column("input_ids")
        parts += [chunk.flatten().to_numpy(zero_copy_only=True) for chunk in column.chunks]
    return np.concatenate(parts)


def build_corpus(shared: Path, megabytes: float, path: Path) -> tuple[int, int]:
    source = shared / "corpora" / "fineweb_edu_150docs.jsonl"
    lines = source.read_text(encoding="utf-8").splitlines()
    written = docs = 0
    with path.open("w", encoding="utf-8") as file:
        while written < megabytes * 1e6:
            for line in lines:
                file.write(line + "\n")
                written += len(line.encode("utf-8")) + 1
                docs += 1
    return written, docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=55.0)
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared")
    args = parser.parse_args()
    tokenizer_dir = args.shared / "gpt2-tokenizer"
    if not tokenizer_dir.is_dir():
        sys.exit(f"needs the GPT-2 tokenizer and FineWeb-Edu text from {args.shared} (absent)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()
    import nanogpt2.data  # noqa: F401  (imported before timing)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        corpus = tmp_dir / "corpus.jsonl"
        size, docs = build_corpus(args.shared, args.megabytes, corpus)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"python {platform.python_version()}; num_proc={args.num_proc}")
        print(f"corpus: FineWeb-Edu sample-10BT, 150 documents repeated: {docs:,} docs, {size / 1e6:.1f} MB")
        best = {"baseline": float("inf"), "prepare_data": float("inf")}
        tokens = {}
        for repeat in range(args.repeats):
            for name, runner in (("baseline", run_baseline), ("prepare_data", run_prepare)):
                out_dir = tmp_dir / f"{name}-{repeat}"
                if name == "baseline":
                    out_dir.mkdir()
                start = time.perf_counter()
                tokens[name] = runner(corpus, out_dir, tokenizer_dir, args.num_proc)
                seconds = time.perf_counter() - start
                best[name] = min(best[name], seconds)
                print(f"  {name:13s} run {repeat}: {tokens[name]:,} tokens in {seconds:6.2f} s "
                      f"= {tokens[name] / seconds / 1e6:5.2f} M tok/s")
        baseline_stream = np.concatenate([np.load(p) for p in sorted((tmp_dir / "baseline-0").glob("*.npy"))])
        identical = np.array_equal(baseline_stream, _prepared_stream(tmp_dir / "prepare_data-0"))
        rate = {name: tokens[name] / best[name] / 1e6 for name in best}
        print(f"ids identical to tiktoken GPT-2: {identical}")
        print(f"baseline (tiktoken Pool.imap -> .npy): {rate['baseline']:.2f} M tok/s (best of {args.repeats})")
        print(f"prepare_data (datasets.map -> Arrow):  {rate['prepare_data']:.2f} M tok/s (best of {args.repeats})")
        print(f"ratio prepare_data / baseline: {rate['prepare_data'] / rate['baseline']:.2f}x")
        shutil.rmtree(tmp_dir / "baseline-0", ignore_errors=True)
        if not identical:
            sys.exit("token ids differ from the baseline")


if __name__ == "__main__":
    main()
