"""FSDP2 on CPU: torch's `fully_shard` of a tiny model per `NanoGPT2Block` on 2 gloo processes.

Accelerate 1.15 falls back to DDP on a CPU even when handed an FSDP plugin, so this tests torch's FSDP2
directly (what Accelerate's `fsdp_version: 2` calls on GPUs): the sharded run gives the losses of one
process, the weights gathered from the shards are the one-process weights, and a sharded
`torch.distributed.checkpoint` save of model and optimizer resumes exactly. The worker is
tests/_fsdp2_worker.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _fsdp2_worker import RESUME_STEP, train_unsharded
from _train_helpers import subprocess_env
from conftest import REPO_ROOT

WORKER = REPO_ROOT / "tests" / "_fsdp2_worker.py"


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fsdp2")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), str(out)]
    done = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def unsharded() -> tuple[list[float], dict[str, torch.Tensor]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_unsharded()
    finally:
        torch.set_num_threads(threads)


def test_sharded_losses_equal_one_process(sharded_run: Path, unsharded: tuple) -> None:
    result = json.loads((sharded_run / "losses.json").read_text())
    assert result["world_size"] == 2 and result["weights_sharded"]
    assert result["losses"] == pytest.approx(unsharded[0], abs=1e-5)


def test_gathered_full_state_dict_equals_one_process_weights(sharded_run: Path, unsharded: tuple) -> None:
    gathered = torch.load(sharded_run / "full_state.pt", weights_only=True)
    expected = unsharded[1]
    assert set(gathered) == set(expected)  # the tied head included, as save_pretrained expects
    for name, tensor in gathered.items():
        assert not isinstance(tensor, torch.distributed.tensor.DTensor), name
        assert tensor.shape == expected[name].shape, name
        torch.testing.assert_close(tensor, expected[name], atol=1e-5, rtol=0, msg=name)


def test_sharded_checkpoint_resumes_exactly(sharded_run: Path) -> None:
    result = json.loads((sharded_run / "losses.json").read_text())
    assert len(result["resumed_losses"]) == len(result["losses"]) - RESUME_STEP
    assert result["resumed_losses"] == result["losses"][RESUME_STEP:]  # bit for bit: same shards, same order
    assert any((sharded_run / "sharded_checkpoint").glob("*.distcp"))
