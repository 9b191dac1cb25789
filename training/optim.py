"""AdamW with GPT-2's weight-decay split and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from .config import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW decaying only tensors of rank >= 2 (matmul weights and embeddings), not biases or LayerNorm.

    Tied weights appear once in `named_parameters()`, so the shared embedding / output matrix is
    decayed once. The fused kernel (one launch for all parameters) is used on CUDA and on CPU.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=device.type in ("cuda", "cpu") or None
    )


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> LambdaLR:
    """Linear warmup from 0 to `lr` over `warmup_steps`, then half a cosine down to `lr * min_lr_ratio`
    at `max_steps` (transformers' schedule: the LR of step s, counted from 0, is lr * f(s))."""
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=cfg.warmup_steps,
        num_training_steps=cfg.max_steps,
        min_lr_rate=cfg.min_lr_ratio,
    )
