"""Conversation preparation throughput: ``nanogpt2.data.prepare_chat_data`` end to end.

The corpus is ../shared's two SFT samples repeated: the ``messages`` sample (3 conversations) and the
OASST sample (6 trees), each copy made distinct (a copy number in every text, fresh message and tree
ids) so the held-out split and the thread builder see as many conversations as a real dataset. Each
run reads the jsonl file, builds threads (OASST), validates, tokenizes with the GPT-2 tokenizer and
the chat template (``apply_chat_template`` with assistant masks, batched in ``Dataset.map``) and
writes the splits, tokenizer and ``meta.json``; the best of ``--repeats`` runs is reported as
conversations/s and tokens/s.

Command line::

    python benchmarks/bench_prepare_chat.py [--copies 8000] [--num-proc 1 2] [--repeats 2] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import datasets

from nanogpt2.data import load_meta, prepare_chat_data

REPO_ROOT = Path(__file__).resolve().parents[1]


def messages_corpus(sample: Path, copies: int, path: Path) -> None:
    records = [json.loads(line) for line in sample.read_text().splitlines() if line.strip()]
    with path.open("w") as file:
        for copy in range(copies):
            for record in records:
                messages = [m | {"content": f"{m['content']} ({copy})"} for m in record["messages"]]
                file.write(json.dumps({"messages": messages}) + "\n")


def oasst_corpus(sample: Path, copies: int, path: Path) -> None:
    rows = [json.loads(line) for line in sample.read_text().splitlines() if line.strip()]
    with path.open("w") as file:
        for copy in range(copies):
            for row in rows:
                fresh = row | {"message_id": f"{copy}-{row['message_id']}", "text": f"{row['text']} ({copy})",
                               "message_tree_id": f"{copy}-{row['message_tree_id']}",
                               "parent_id": row["parent_id"] and f"{copy}-{row['parent_id']}"}
                file.write(json.dumps(fresh) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8000)
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    datasets.disable_progress_bars()
    tokenizer = args.shared / "gpt2-tokenizer"
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; corpus: ../shared/sft samples "
          f"x {args.copies} distinct copies; GPT-2 tokenizer + chat template")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        corpora = {"messages": scratch / "messages.jsonl", "oasst (threads best)": scratch / "oasst.jsonl"}
        messages_corpus(args.shared / "sft" / "conversations_sample.jsonl", args.copies, corpora["messages"])
        oasst_corpus(args.shared / "sft" / "oasst_sample.jsonl", args.copies, corpora["oasst (threads best)"])
        print("| corpus | num_proc | conversations | tokens | seconds | conversations/s | tokens/s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, corpus in corpora.items():
            for num_proc in args.num_proc:
                best = float("inf")
                for repeat in range(args.repeats):
                    out = scratch / f"out-{repeat}"
                    started = time.perf_counter()
                    prepare_chat_data([str(corpus)], out, tokenizer=tokenizer, num_proc=num_proc, verbose=False)
                    best = min(best, time.perf_counter() - started)
                    meta = load_meta(out)
                    shutil.rmtree(out)
                print(f"| {name} | {num_proc} | {meta['documents']:,} | {meta['tokens']:,} | {best:.2f} | "
                      f"{meta['documents'] / best:,.0f} | {meta['tokens'] / best:,.0f} |")


if __name__ == "__main__":
    main()
