"""Tiny run configs and launch helpers shared by the training tests (data and tokenizer: conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import REPO_ROOT, reset_accelerate

from nanogpt2.training import RunConfig, TrainResult, load_config, train
from nanogpt2.utils import read_jsonl

SCRIPTS = {verb: REPO_ROOT / "scripts" / f"{verb}.py" for verb in ("pretrain", "sft")}
PRETRAIN = SCRIPTS["pretrain"]

# Tiny model and batch: 2 layers, width 32, T=32; 256 tokens per step = 4 x 32 x 2 micro-steps on one process.
TINY_OVERRIDES = [
    "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.seq_len=32", "model.vocab_size=320",
    "train.micro_batch_size=4", "train.total_batch_tokens=256", "train.max_steps=8", "train.warmup_steps=2",
    "train.lr=3e-3", "train.mixed_precision=no",
    "eval.every=4", "eval.val_tokens=256", "eval.hellaswag=false", "eval.num_samples=2", "eval.max_new_tokens=8",
    "checkpoint.every=4", "logging.tracker=none",
]


def tiny_cli_args(data_dir: Path, out_dir: Path, *extra: str) -> list[str]:
    return [*TINY_OVERRIDES, f"data.path={data_dir}", f"out_dir={out_dir}", *extra]


def tiny_config(data_dir: Path, out_dir: Path, *extra: str) -> RunConfig:
    return load_config(None, tiny_cli_args(data_dir, out_dir, *extra))


def train_in_process(config: RunConfig) -> TrainResult:
    """`train` on one thread (the runs are tiny and the test machine's cores are shared), with a fresh
    Accelerate state before and after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    reset_accelerate()
    try:
        return train(config)
    finally:
        reset_accelerate()
        torch.set_num_threads(threads)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def start_pretrain(args: list[str], env: dict[str, str], launcher: list[str] | None = None,
                   script: Path = PRETRAIN) -> subprocess.Popen:
    """`scripts/pretrain.py ARGS` (the shim users launch; or `script`) in a subprocess, stdout and stderr
    together."""
    command = [*(launcher or [sys.executable]), str(script), *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def launch(launcher: list[str], args: list[str], script: Path = PRETRAIN) -> str:
    """`LAUNCHER scripts/pretrain.py ARGS` (or `script`) to the end; its output, asserting success."""
    proc = start_pretrain(args, subprocess_env(), launcher, script=script)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    return output


def pretrain_on_two_processes(args: list[str]) -> str:
    """`torchrun --nproc_per_node 2 scripts/pretrain.py ARGS` (gloo DDP on a CPU); its output, asserting success."""
    return launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], args)


def training_losses(out_dir: Path) -> dict[int, float]:
    """step -> loss of the training records of a run's metrics.jsonl (asserting no step appears twice)."""
    records = [r for r in read_jsonl(out_dir / "metrics.jsonl") if "loss" in r]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"duplicated steps in metrics.jsonl: {steps}"
    return {r["step"]: r["loss"] for r in records}
