"""Two processes (torchrun, gloo on CPU) give exactly the one-process HellaSwag result."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _hellaswag_helpers import make_examples, tiny_gpt2, train_tiny_tokenizer, write_jsonl

from nanogpt2.evaluation import evaluate_hellaswag, load_hellaswag, score_hellaswag

WORKER = Path(__file__).with_name("_hellaswag_dist_worker.py")


def test_two_processes_equal_one(tmp_path):
    examples = make_examples(22, seed=5)  # not a multiple of the batch or the process count
    data = write_jsonl(tmp_path / "val.jsonl", examples)
    tokenizer = train_tiny_tokenizer(examples)
    model = tiny_gpt2(len(tokenizer), seed=5)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    out.mkdir()

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(tmp_path / "model"),
        str(data),
        str(out),
    ]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not finish in 150 s: {e.stderr}")
    assert run.returncode == 0, run.stderr[-4000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["num_processes"] == 2 and "MULTI_CPU" in r["distributed_type"] for r in ranks)
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    assert ranks[0]["ending_logprobs"] == ranks[1]["ending_logprobs"]

    loaded = load_hellaswag(data)
    one = evaluate_hellaswag(model, tokenizer, loaded, batch_size=3, progress=False)
    assert ranks[0]["metrics"] == one
    one_scores = score_hellaswag(model, tokenizer, loaded, batch_size=3, progress=False).ending_logprobs
    # Same batches in both runs; only thread counts differ (torchrun sets OMP_NUM_THREADS=1).
    torch.testing.assert_close(torch.tensor(ranks[0]["ending_logprobs"]), torch.tensor(one_scores), atol=1e-5, rtol=0)
