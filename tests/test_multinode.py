"""The README's several-nodes recipe rehearsed on one machine: two "nodes" of one CPU process each.

`accelerate launch --config_file configs/accelerate/multinode.yaml --machine_rank 0|1 --main_process_ip
127.0.0.1 ...` is started twice, in parallel, into one shared out_dir (the documented requirement), on the
tiny run of _train_helpers.py. Accelerate 1.15 takes the shipped MULTI_GPU config on a GPU-less machine:
the loop's `Accelerator(cpu=True)` makes it gloo DDP (MULTI_CPU) across the two nodes.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from _train_helpers import PRETRAIN, subprocess_env, tiny_cli_args, training_losses
from conftest import REPO_ROOT

from nanogpt2.utils import read_jsonl

MULTINODE_CONFIG = REPO_ROOT / "configs" / "accelerate" / "multinode.yaml"
TIMEOUT_S = 180


def validation_losses(out_dir: Path) -> dict[int, float]:
    return {r["step"]: r["val_loss"] for r in read_jsonl(out_dir / "metrics.jsonl") if "val_loss" in r}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_tree(pid: int) -> None:
    """SIGKILL a launcher and everything under it: torchrun starts each trainer in a session of its own, out of
    reach of a process-group kill."""
    with contextlib.suppress(psutil.NoSuchProcess):
        launcher = psutil.Process(pid)
        processes = [*launcher.children(recursive=True), launcher]
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(processes, timeout=10)


def node_launcher(machine_rank: int, port: int) -> list[str]:
    """The README's per-node command, with the shipped config's 2 x 8 GPUs overridden to 2 x 1 process."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(MULTINODE_CONFIG),
            "--num_machines", "2", "--num_processes", "2", "--machine_rank", str(machine_rank),
            "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            "--mixed_precision", "no", "--dynamo_backend", "no"]


@pytest.fixture(scope="module")
def two_node_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """Both nodes' run into one shared out_dir; returns it and each node's output. Both processes are
    killed on the way out, whatever happened."""
    out = tmp_path_factory.mktemp("multinode") / "shared_out"
    port = free_port()
    env = subprocess_env(GLOO_SOCKET_IFNAME="lo")  # gloo's traffic on the loopback interface only
    args = tiny_cli_args(tiny_data, out, "checkpoint.keep_last=2")
    nodes = [subprocess.Popen([*node_launcher(rank, port), str(PRETRAIN), *args], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        outputs = [node.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] for node in nodes]
        for rank, (node, output) in enumerate(zip(nodes, outputs, strict=True)):
            assert node.returncode == 0, f"node {rank}:\n{output}"
        yield out, outputs
    finally:
        for node in nodes:
            kill_tree(node.pid)
            node.communicate()


def test_two_nodes_match_one_process(two_node_run: tuple[Path, list[str]], reference_run: Path) -> None:
    out, (main_node, other_node) = two_node_run
    assert "1 micro-step(s) of 4 x 32 tokens on each of 2 process(es) (MULTI_CPU)" in main_node
    losses = training_losses(out)
    assert sorted(losses) == list(range(1, 9))
    assert losses == pytest.approx(training_losses(reference_run), abs=1e-5)
    assert validation_losses(out) == pytest.approx(validation_losses(reference_run), abs=1e-5)


def test_only_the_main_node_writes_metrics_plots_and_final(two_node_run: tuple[Path, list[str]]) -> None:
    out, (main_node, other_node) = two_node_run
    # The loop's messages come from the main process only.
    assert main_node.count("final model written to") == 1
    assert "final model written to" not in other_node and "training 8 steps" not in other_node
    # One record per step and evaluation (training_losses also asserts no training step appears twice).
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in metrics if "val_loss" in r] == [4, 8]
    assert len([r for r in metrics if "loss" in r]) == 8
    samples = read_jsonl(out / "samples.jsonl")
    assert [r["step"] for r in samples] == [4, 4, 8, 8]
    assert any((out / "plots").iterdir())
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "config.json").is_file()
    assert not list(out.glob(".tmp-*"))
    # Checkpoints are the one folder every process writes into: each node's data position is there.
    assert sorted(p.name for p in (out / "checkpoints" / "step_0000008").glob("loader_rank*.pt")) == [
        "loader_rank0.pt", "loader_rank1.pt"]
