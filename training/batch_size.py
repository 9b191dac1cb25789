"""`train.micro_batch_size=auto`: the largest micro-batch that fits the device, found before training.

The candidates are the powers of two that divide `total_batch_tokens / (seq_len * world_size)`, so every
candidate keeps `total_batch_tokens` fixed and gradient accumulation makes up the rest. Starting from the
largest, each is tried with a real forward and backward of the run's model (its precision and activation
checkpointing) and halved on out-of-memory (Accelerate's `find_executable_batch_size`). Every process
searches on its own device; they then take the smallest size found, so all of them agree.

No optimizer step is taken: it would change the freshly initialised weights (a run with `auto` must start
from the same weights as one given the size it finds), and what the optimizer adds to the peak is its state,
which the probe holds as an untouched buffer of the same size instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedType, find_executable_batch_size

from .config import ConfigError

CPU_MAX_MICRO_BATCH_TOKENS = 8192
"""On a CPU an allocation that does not fit rarely raises (the OS kills the process instead), so `auto` starts
no higher than this many tokens per micro-batch there."""
OPTIMIZER_STATE_BYTES_PER_PARAM = 8
"""AdamW's two fp32 moments per parameter, allocated at the first step (Muon keeps less)."""
DDP_BUCKET_BYTES_PER_PARAM = 4
"""DDP's fp32 gradient buckets, one more copy of the gradients when there is more than one process."""


def largest_candidate(total_batch_tokens: int, seq_len: int, world_size: int, max_tokens: int | None = None) -> int:
    """The largest power of two dividing `total_batch_tokens / (seq_len * world_size)` (halving it keeps it a
    divisor), at most `max_tokens / seq_len` but at least 1; a `ConfigError` when the batch is no whole number of
    sequences per process."""
    per_process_tokens = seq_len * world_size
    if total_batch_tokens % per_process_tokens:
        raise ConfigError(f"train.total_batch_tokens: {total_batch_tokens} is not a multiple of model.seq_len x "
                          f"world size = {seq_len} x {world_size} = {per_process_tokens}")
    sequences = total_batch_tokens // per_process_tokens
    largest = sequences & -sequences  # the largest power of two that divides it
    if max_tokens is not None:
        while largest > 1 and largest * seq_len > max_tokens:
            largest //= 2
    return largest


def reserved_bytes(n_params: int, world_size: int, sharded: bool) -> int:
    """What the optimizer and the wrapper will add to the probed peak on one process: the optimizer state,
    plus DDP's gradient buckets over several processes; under FSDP each process holds 1 / world_size of the
    state and no buckets. (The probe itself runs the unsharded model, so under FSDP it also counts full
    weights and gradients: the size it finds fits, though a larger one might.)"""
    if sharded:
        return -(-n_params * OPTIMIZER_STATE_BYTES_PER_PARAM // world_size)
    return n_params * (OPTIMIZER_STATE_BYTES_PER_PARAM + (DDP_BUCKET_BYTES_PER_PARAM if world_size > 1 else 0))


def probe_micro_batch(model: torch.nn.Module, batch_size: int, seq_len: int, accelerator: Accelerator,
                      reserve_bytes: int) -> None:
    """One training forward and backward of `batch_size` sequences of `seq_len` tokens on `model` (on
    `accelerator.device`, not yet prepared), holding `reserve_bytes` aside for what the optimizer and DDP will
    allocate; raises the device's out-of-memory error when it does not fit. Leaves no gradients behind."""
    device = accelerator.device
    reserve = torch.empty(reserve_bytes, dtype=torch.uint8, device=device)
    x = torch.zeros(batch_size, seq_len, dtype=torch.long, device=device)  # (B, T): token ids don't change memory
    try:
        with accelerator.autocast():
            loss = model(input_ids=x, shift_labels=x).loss
        loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
        del reserve, x


def find_micro_batch_size(largest: int, probe: Callable[[int], None], log: Callable[[str], None]) -> int:
    """The first of `largest`, `largest / 2`, ..., 1 for which `probe(size)` does not run out of memory; 0 when
    even 1 does (the caller raises, once every process knows)."""
    size = largest

    def halve() -> int:
        nonlocal size
        size //= 2
        log(f"train.micro_batch_size=auto: {size * 2} sequences do not fit" + (f", trying {size}" if size else ""))
        return size

    def fits(batch_size: int) -> int:
        probe(batch_size)
        return batch_size

    try:
        return find_executable_batch_size(fits, starting_batch_size=largest, reduce_batch_size_fn=halve)()
    except RuntimeError:
        if size:
            raise
        return 0


def auto_micro_batch_size(model: torch.nn.Module, total_batch_tokens: int, seq_len: int, accelerator: Accelerator,
                          log: Callable[[str], None]) -> int:
    """The largest micro-batch (sequences per process) that fits every process's device, the same on all of them."""
    on_cpu = accelerator.device.type == "cpu"
    largest = largest_candidate(total_batch_tokens, seq_len, accelerator.num_processes,
                                CPU_MAX_MICRO_BATCH_TOKENS if on_cpu else None)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    sharded = accelerator.distributed_type == DistributedType.FSDP
    reserve = reserved_bytes(n_params, accelerator.num_processes, sharded)
    was_training = model.training
    model.train()  # dropout masks count too
    # The probe must not move the seeded RNG streams (dropout draws from them): the run stays the same as one
    # given this size directly.
    with torch.random.fork_rng(devices=[] if on_cpu else [accelerator.device], device_type=accelerator.device.type):
        found = find_micro_batch_size(
            largest, lambda size: probe_micro_batch(model, size, seq_len, accelerator, reserve), log)
    model.train(was_training)
    if accelerator.num_processes > 1:
        found = int(accelerator.gather(torch.tensor([found], device=accelerator.device)).min())
    if found == 0:  # raised on every process, so none waits for the others
        raise ConfigError("train.micro_batch_size: auto found no size that fits: one sequence runs out of memory; "
                          "shorten model.seq_len or set train.gradient_checkpointing=true")
    return found


def saved_micro_batch_size(checkpoint: Path) -> int:
    """The micro-batch size a checkpoint was trained with: its config.yaml holds the resolved config."""
    try:
        size = yaml.safe_load((checkpoint / "config.yaml").read_text())["train"]["micro_batch_size"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        size = None
    if type(size) is not int or size < 1:
        raise ConfigError(f"train.micro_batch_size: auto cannot keep the size of {checkpoint}: its config.yaml has "
                          f"no train.micro_batch_size number; set one")
    return size
