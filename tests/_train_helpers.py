"""Tiny prepared data and configs for the training tests (hermetic: generated text, tokenizer trained here)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from nanogpt2.training import RunConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = REPO_ROOT / "scripts" / "pretrain.py"

_SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "a small bird", "the teacher", "our model"]
_VERBS = ["sees", "likes", "reads", "finds", "builds", "writes about", "walks past"]
_OBJECTS = ["a red ball", "the river", "an apple", "the green house", "a long book", "the sea", "some bread"]


def generated_documents(n_docs: int = 400, seed: int = 0) -> list[str]:
    """Short documents of simple sentences: enough structure for a tiny model's loss to fall."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        sentences = [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}."
                     for _ in range(rng.randint(2, 6))]
        docs.append(" ".join(s.capitalize() for s in sentences))
    return docs


def train_tiny_tokenizer(texts: list[str], out_dir: Path, vocab_size: int = 300) -> Path:
    """A byte-level BPE with `<|endoftext|>`, saved as a transformers tokenizer folder."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.save_pretrained(out_dir)
    return out_dir


def make_tiny_data(root: Path) -> Path:
    """Prepared data (train/val/tokenizer/meta.json) through nanogpt2.data.prepare_data."""
    from nanogpt2.data import prepare_data

    docs = generated_documents()
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tokenizer_dir = train_tiny_tokenizer(docs, root / "tokenizer")
    return prepare_data([str(corpus)], root / "prepared", tokenizer=str(tokenizer_dir), val_tokens=2048,
                        verbose=False)


# Tiny model and batch: 2 layers, width 32, T=32; 256 tokens per step = 4 x 32 x 2 micro-steps on one process.
TINY_OVERRIDES = [
    "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.seq_len=32", "model.vocab_size=320",
    "train.micro_batch_size=4", "train.total_batch_tokens=256", "train.max_steps=8", "train.warmup_steps=2",
    "train.lr=3e-3", "train.mixed_precision=no",
    "eval.every=4", "eval.val_tokens=256", "eval.hellaswag=false", "eval.num_samples=2", "eval.max_new_tokens=8",
    "checkpoint.every=4", "logging.tracker=none",
]


def tiny_config(data_dir: Path, out_dir: Path, *extra: str) -> RunConfig:
    return load_config(None, [*TINY_OVERRIDES, f"data.path={data_dir}", f"out_dir={out_dir}", *extra])


def tiny_cli_args(data_dir: Path, out_dir: Path, *extra: str) -> list[str]:
    return [*TINY_OVERRIDES, f"data.path={data_dir}", f"out_dir={out_dir}", *extra]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def start_pretrain(args: list[str], env: dict[str, str], launcher: list[str] | None = None) -> subprocess.Popen:
    command = [*(launcher or [sys.executable]), str(PRETRAIN), *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def training_losses(out_dir: Path) -> dict[int, float]:
    """step -> loss of the training records of a run's metrics.jsonl (asserting no step appears twice)."""
    from nanogpt2.training.metrics_log import read_jsonl

    records = [r for r in read_jsonl(out_dir / "metrics.jsonl") if "loss" in r]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"duplicated steps in metrics.jsonl: {steps}"
    return {r["step"]: r["loss"] for r in records}


_CACHE: dict[str, Path] = {}


def reset_accelerate() -> None:
    """Forget accelerate's process-wide singletons so that the next in-process run builds its own state."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def cached_tiny_data(tmp_path_factory) -> Path:
    """One prepared tiny dataset for the whole test session (shared by the training test modules)."""
    if "data" not in _CACHE:
        _CACHE["data"] = make_tiny_data(tmp_path_factory.mktemp("tiny_data"))
    return _CACHE["data"]


def cached_run(name: str, tmp_path_factory, *overrides: str) -> Path:
    """An uninterrupted in-process run, computed once per session per name."""
    if name not in _CACHE:
        import torch

        from nanogpt2.training import train

        data = cached_tiny_data(tmp_path_factory)
        out = tmp_path_factory.mktemp(name) / "run"
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        reset_accelerate()
        try:
            train(tiny_config(data, out, *overrides))
        finally:
            reset_accelerate()
            torch.set_num_threads(threads)
        _CACHE[name] = out
    return _CACHE[name]
