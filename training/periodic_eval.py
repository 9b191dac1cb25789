"""What runs every `eval.every` steps: validation loss, HellaSwag and sample generations."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from accelerate import Accelerator

from ..data import IGNORE_INDEX, TokenLoader
from ..evaluation import evaluate_hellaswag, load_hellaswag
from .config import RunConfig
from .fsdp import is_sharded


def val_batches_per_process(config: RunConfig, world_size: int) -> int:
    """Whole micro-batches of validation per process so that all processes see `eval.val_tokens` in total."""
    per_batch = config.train.micro_batch_size * config.model.seq_len * world_size
    return max(1, config.eval.val_tokens // per_batch)


@torch.no_grad()
def validation_loss(model: torch.nn.Module, accelerator: Accelerator, config: RunConfig, tokenizer: Any) -> float:
    """Mean next-token loss over the scored targets of the first batches of the val split (all targets for
    text, the assistant's for conversations): the same tokens at every evaluation.

    A fresh unshuffled loader always yields the same batches; each process reads its own shard, and the
    summed losses and target counts of all processes make the mean.
    """
    loader = TokenLoader(
        config.data.path, "val", batch_size=config.train.micro_batch_size, seq_len=config.model.seq_len,
        rank=accelerator.process_index, world_size=accelerator.num_processes, shuffle=False, tokenizer=tokenizer,
    )
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, device=accelerator.device)  # summed loss, scored targets
    for x, y in itertools.islice(iter(loader), val_batches_per_process(config, accelerator.num_processes)):
        with accelerator.autocast():
            x, y = x.to(accelerator.device), y.to(accelerator.device)
            # use_cache=False: no KV cache to fill; num_items_in_batch=1: the summed loss.
            totals[0] += model(input_ids=x, shift_labels=y, use_cache=False, num_items_in_batch=1).loss.float()
            totals[1] += (y != IGNORE_INDEX).sum()
    model.train(was_training)
    loss_sum, count = accelerator.reduce(totals, "sum").tolist()
    return loss_sum / max(count, 1)


@torch.no_grad()
def sample_texts(model: Any, tokenizer: Any, accelerator: Accelerator, config: RunConfig, step: int) -> list[str]:
    """`eval.num_samples` top-k continuations of `eval.sample_prompt`, seeded by (seed, step).

    Sampling runs under a forked RNG so it never changes the training random stream; every process
    generates the same texts. On a sharded model (FSDP) each forward is collective, so every process
    runs forwards until all have finished (`synced_gpus`) even if their samples ended at different steps.
    """
    cfg = config.eval
    if cfg.num_samples == 0:
        return []
    device = accelerator.device
    prompt = tokenizer(cfg.sample_prompt, return_tensors="pt").input_ids.to(device)
    prompt = prompt.expand(cfg.num_samples, -1)
    max_new = min(cfg.max_new_tokens, config.model.seq_len - prompt.shape[1])
    if max_new <= 0:
        return []
    was_training = model.training
    model.eval()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), accelerator.autocast():
        torch.manual_seed(config.seed + step)
        out = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=max_new, do_sample=True,
            top_k=cfg.sample_top_k, pad_token_id=tokenizer.eos_token_id, synced_gpus=is_sharded(accelerator),
        )
    model.train(was_training)
    return tokenizer.batch_decode(out, skip_special_tokens=True)  # drops the end-of-text padding


def load_hellaswag_examples(config: RunConfig, log: Any) -> list[dict] | None:
    """The examples to score during training, or None (with one logged reason) when they cannot be loaded."""
    if not config.eval.hellaswag:
        return None
    try:
        return load_hellaswag(config.eval.hellaswag_path, limit=config.eval.hellaswag_limit)
    except Exception as e:  # noqa: BLE001 - any failure (no Hub, bad path) only disables this metric
        where = config.eval.hellaswag_path or "the Hugging Face Hub"
        log(f"HellaSwag disabled for this run: could not load it from {where} ({type(e).__name__}: {e})")
        return None


def hellaswag_scores(model: Any, tokenizer: Any, examples: list[dict], accelerator: Accelerator,
                     config: RunConfig) -> dict[str, float]:
    with accelerator.autocast():
        result = evaluate_hellaswag(
            model, tokenizer, examples, style=config.eval.hellaswag_style,
            batch_size=config.eval.hellaswag_batch_size, accelerator=accelerator, progress=False,
        )
    return {
        "hellaswag_acc": float(result["acc"]),
        "hellaswag_acc_norm": float(result["acc_norm"]),
        "hellaswag_acc_norm_chars": float(result["acc_norm_chars"]),
        "hellaswag_n": int(result["n"]),
    }
