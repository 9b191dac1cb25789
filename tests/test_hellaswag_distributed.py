"""Two processes (torchrun, gloo on CPU) give the one-process HellaSwag result, packed and plain."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
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


class _Rank:
    """What `score_hellaswag` asks of an Accelerator, for one process of `world_size`, without a process
    group: the scores it would contribute to the cross-process sum are kept."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.process_index, self.num_processes = rank, world_size
        self.contributed = None

    def autocast(self):
        import contextlib

        return contextlib.nullcontext()

    def reduce(self, tensor: torch.Tensor, reduction: str) -> torch.Tensor:
        assert reduction == "sum"
        self.contributed = tensor.clone()
        return tensor


@pytest.mark.parametrize("world_size", [2, 3, 8])
def test_every_process_runs_as_many_forwards_as_the_busiest(tiny_tokenizer, world_size):
    """A sharded model's forward is collective (FSDP): a process that ran fewer would leave the others
    waiting. The extra forwards add nothing: the processes' contributions sum to the one-process scores."""
    examples = make_examples(7, seed=3)  # 7 examples in batches of 2: 4 batches, uneven for 3 and 8
    model = tiny_nanogpt2(len(tiny_tokenizer), seed=3)
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    total, forwards = 0, []
    for rank in range(world_size):
        process = _Rank(rank, world_size)
        calls.clear()
        score_hellaswag(model, tiny_tokenizer, examples, batch_size=2, accelerator=process, progress=False)
        forwards.append(len(calls))
        total = total + process.contributed
    assert len(set(forwards)) == 1 and forwards[0] >= 1
    one = score_hellaswag(model, tiny_tokenizer, examples, batch_size=2, progress=False)
    expected = torch.tensor([v for ending in one.ending_logprobs for v in ending], dtype=torch.float64)
    torch.testing.assert_close(total, expected, atol=1e-6, rtol=0)
