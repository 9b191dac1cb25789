"""Two processes (torchrun, gloo on CPU) give the one-process HellaSwag result, packed and plain."""

import json
import subprocess
import sys
from pathlib import Path

import torch
from _hellaswag_helpers import make_examples, tiny_nanogpt2, write_jsonl

from nanogpt2.evaluation import evaluate_hellaswag, load_hellaswag, score_hellaswag

WORKER = Path(__file__).with_name("_hellaswag_dist_worker.py")


def test_two_processes_equal_one(tmp_path, tiny_tokenizer):
    data = write_jsonl(tmp_path / "val.jsonl", make_examples(22, seed=5))  # not a multiple of batch or processes
    model = tiny_nanogpt2(len(tiny_tokenizer), seed=5)
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    out.mkdir()

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
               str(tmp_path / "model"), str(data), str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-4000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["num_processes"] == 2 and "MULTI_CPU" in r["distributed_type"] for r in ranks)
    assert ranks[0] == ranks[1]  # every process returns the same metrics and scores

    examples = load_hellaswag(data)
    assert ranks[0]["metrics"] == evaluate_hellaswag(model, tiny_tokenizer, examples, batch_size=3, progress=False)
    for share_context in ("packed", "plain"):
        one = score_hellaswag(model, tiny_tokenizer, examples, batch_size=3, progress=False,
                              share_context=share_context == "packed")
        # Same batches in both runs; only thread counts differ (torchrun sets OMP_NUM_THREADS=1).
        torch.testing.assert_close(torch.tensor(ranks[0][share_context]), torch.tensor(one.ending_logprobs),
                                   atol=1e-5, rtol=0)
