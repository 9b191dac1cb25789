"""FSDP2 (`fully_shard`) of a tiny NanoGPT2LMHeadModel on gloo processes, run by tests/test_fsdp2.py.

`torchrun --nproc_per_node 2 tests/_fsdp2_worker.py OUT` trains STEPS AdamW steps on fixed data, each
process on its half of the batch, saving a sharded checkpoint (`torch.distributed.checkpoint`, model and
optimizer) after RESUME_STEP; then a second, differently initialised sharded model loads that checkpoint
and trains the remaining steps. Rank 0 writes OUT/losses.json (both trajectories) and OUT/full_state.pt
(the weights gathered from the shards). `train_unsharded` is the one-process reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import fully_shard

from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel

STEPS, RESUME_STEP = 6, 3
BATCH, SEQ_LEN, VOCAB = 4, 16, 64
LR = 3e-3


def build_model(seed: int) -> NanoGPT2LMHeadModel:
    torch.manual_seed(seed)
    config = NanoGPT2Config(vocab_size=VOCAB, n_positions=SEQ_LEN, n_embd=32, n_layer=2, n_head=2,
                            bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
    return NanoGPT2LMHeadModel(config)


def fixed_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """STEPS (BATCH, SEQ_LEN) int64 inputs and next-token targets, the same on every process."""
    generator = torch.Generator().manual_seed(1234)
    tokens = torch.randint(0, VOCAB, (STEPS, BATCH, SEQ_LEN + 1), generator=generator)
    return [(t[:, :-1], t[:, 1:]) for t in tokens]


def build_optimizer(model: torch.nn.Module) -> torch.optim.AdamW:
    # foreach=False: the same per-tensor arithmetic whether the parameters are plain tensors or DTensor shards.
    return torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1, foreach=False)


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: range, rank: int,
                world_size: int) -> list[float]:
    """AdamW steps on this process's rows of each fixed batch; returns the loss over the whole batch."""
    rows = BATCH // world_size
    losses = []
    for step in steps:
        x, y = fixed_batches()[step]
        x, y = x[rank * rows:(rank + 1) * rows], y[rank * rows:(rank + 1) * rows]
        loss = model(input_ids=x, shift_labels=y).loss  # mean over this process's tokens
        loss.backward()  # FSDP2 reduce-scatters the gradients as their mean over processes
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        detached = loss.detach().clone()
        if world_size > 1:
            dist.all_reduce(detached, op=dist.ReduceOp.AVG)
        losses.append(detached.item())
    return losses


def train_unsharded() -> tuple[list[float], dict[str, torch.Tensor]]:
    """The one-process reference: losses of every step and the final weights."""
    model = build_model(seed=0)
    losses = train_steps(model, build_optimizer(model), range(STEPS), rank=0, world_size=1)
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def sharded(seed: int) -> tuple[NanoGPT2LMHeadModel, torch.optim.Optimizer]:
    """The model sharded per block, then the root (embeddings, tied head, final LayerNorm), and its optimizer."""
    model = build_model(seed)
    for block in model.transformer.h:
        fully_shard(block)
    fully_shard(model)
    return model, build_optimizer(model)


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    checkpoint_dir = out / "sharded_checkpoint"

    model, optimizer = sharded(seed=0)
    losses = train_steps(model, optimizer, range(RESUME_STEP), rank, world_size)
    model_state, optimizer_state = get_state_dict(model, optimizer)  # sharded (DTensor) state
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=checkpoint_dir)
    losses += train_steps(model, optimizer, range(RESUME_STEP, STEPS), rank, world_size)
    # Gathered as Accelerate's `get_state_dict` does for FSDP2 (the loop's final/): every process takes part,
    # rank 0 gets the full tensors on the CPU.
    gather = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
    full_state = get_model_state_dict(model, options=gather)
    weights_sharded = all(isinstance(p, torch.distributed.tensor.DTensor) for p in model.parameters())

    resumed, resumed_optimizer = sharded(seed=1)  # different weights: the load must replace them all
    model_state, optimizer_state = get_state_dict(resumed, resumed_optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=checkpoint_dir)
    set_state_dict(resumed, resumed_optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    resumed_losses = train_steps(resumed, resumed_optimizer, range(RESUME_STEP, STEPS), rank, world_size)

    if rank == 0:
        torch.save(full_state, out / "full_state.pt")
        (out / "losses.json").write_text(json.dumps({
            "world_size": world_size, "weights_sharded": weights_sharded,
            "losses": losses, "resumed_losses": resumed_losses,
        }))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
