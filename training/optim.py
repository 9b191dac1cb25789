"""The optimizer (AdamW, or Muon for the hidden matrices with AdamW for the rest) and the warmup + cosine schedule."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from .config import TrainConfig


def _adamw(params: Iterable[torch.nn.Parameter], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW decaying only tensors of rank >= 2 (matmul weights and embeddings), not biases or LayerNorm.

    Tied weights appear once in `named_parameters()`, so the shared embedding / output matrix is
    decayed once. The fused kernel (one launch for all parameters) is used on CUDA and on CPU.
    """
    params = list(params)
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=device.type in ("cuda", "cpu") or None
    )


def is_muon_parameter(name: str, param: torch.nn.Parameter) -> bool:
    """The 2-D matrices of the transformer blocks: attention c_attn / c_proj and MLP c_fc / c_proj weights.

    The embeddings (token, which is also the tied output layer, and position) are 2-D too but stay
    with AdamW: they are lookups, not matmuls whose update can be orthogonalised.
    """
    return ".h." in f".{name}" and param.dim() == 2


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer made of two, so the Trainer, Accelerate and the LR schedule see a single object.

    `param_groups` is the AdamW groups then the Muon groups, the very dicts the two optimizers own,
    and `state` is one dict that both fill (their parameters are disjoint): the schedule's LambdaLR
    scales each group's own `initial_lr` (`lr` for AdamW, `muon_lr` for Muon), `get_last_lr()[0]`,
    the logged `lr`, stays AdamW's, and `state_dict()` is torch's standard layout (Muon's momentum
    buffers, AdamW's moments), which torch.distributed.checkpoint can shard under FSDP.
    """

    def __init__(self, muon: torch.optim.Muon, adamw: torch.optim.AdamW) -> None:
        self.muon, self.adamw = muon, adamw
        super().__init__([p for group in (*adamw.param_groups, *muon.param_groups) for p in group["params"]], {})
        self.param_groups = [*adamw.param_groups, *muon.param_groups]  # shared dicts, not copies
        self.adamw.state = self.muon.state = self.state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # new group dicts and a new state dict (Accelerate's prepare loads too)
        n_adamw = len(self.adamw.param_groups)
        self.adamw.param_groups, self.muon.param_groups = self.param_groups[:n_adamw], self.param_groups[n_adamw:]
        self.adamw.state = self.muon.state = self.state


def build_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, device: torch.device
) -> torch.optim.AdamW | MuonWithAdamW:
    """`train.optimizer`: 'adamw' (GPT-2's recipe) or 'muon'.

    'muon' is the split of modded-nanogpt (KellerJordan/modded-nanogpt `train_gpt.py`: Muon for the
    blocks' 2-D hidden matrices, Adam for embeddings, the head and scalars) and nanochat
    (karpathy/nanochat `nanochat/gpt.py` `setup_optimizers`: Muon at `matrix_lr=0.02`, momentum 0.95,
    for the 2-D parameters of `transformer.h`; AdamW for `wte`, `lm_head` and the rest). Here GPT-2
    ties the output layer to `wte`, so AdamW gets the token and position embeddings (the tied head
    once), biases and LayerNorms at `lr`; `torch.optim.Muon` gets the matrices of `is_muon_parameter`
    at `muon_lr`, with Nesterov momentum and its default ("original", Keller Jordan's) per-matrix LR
    scale sqrt(max(1, rows / cols)) for nn.Linear's (out, in) weights.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return _adamw((p for _, p in named), cfg, device)
    matrices = [p for name, p in named if is_muon_parameter(name, p)]
    rest = [p for name, p in named if not is_muon_parameter(name, p)]
    muon = torch.optim.Muon(matrices, lr=cfg.muon_lr, momentum=cfg.muon_momentum, nesterov=True,
                            weight_decay=cfg.muon_weight_decay)
    return MuonWithAdamW(muon, _adamw(rest, cfg, device))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> LambdaLR:
    """Linear warmup from 0 to `lr` over `warmup_steps`, then half a cosine down to `lr * min_lr_ratio`
    at `max_steps` (transformers' schedule: the LR of step s, counted from 0, is lr * f(s)).
    Every param group follows it from its own peak (Muon's groups from `muon_lr`)."""
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=cfg.warmup_steps,
        num_training_steps=cfg.max_steps,
        min_lr_rate=cfg.min_lr_ratio,
    )
