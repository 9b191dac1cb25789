"""Model FLOPs utilisation: FLOPs per token from the config, peak FLOP/s from the detected GPU."""

from __future__ import annotations

import re

import torch

from .config import ModelConfig

# Dense (no sparsity) bf16/fp16 tensor-core peaks in FLOP/s, from the vendors' datasheets.
# Matched as whole words against torch.cuda.get_device_name() in order, so specific names come before
# general ones ("H100 PCIe" before "H100") and "L4" never matches inside "L40S".
GPU_PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM: "NVIDIA H100 80GB HBM3"
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("A6000", 155e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("L4", 121e12),
)


def count_params(cfg: ModelConfig) -> int:
    """Parameters of the GPT-2 architecture, the tied embedding counted once.

    Per block: LayerNorms 2*2d, attention qkv d*3d + 3d and projection d*d + d, MLP d*4d + 4d and
    4d*d + d, i.e. 12 d^2 + 13 d. Plus token (V*d) and position (T*d) embeddings and the final LayerNorm.
    """
    d = cfg.n_embd
    return cfg.vocab_size * d + cfg.seq_len * d + cfg.n_layer * (12 * d * d + 13 * d) + 2 * d


def flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs (forward + backward) per token: 6 N + 12 L d T (PaLM, appendix B).

    N counts every parameter that takes part in a matmul: all parameters except the position
    embedding (a lookup); the token embedding stays in because, tied, it is the output layer's
    V x d matmul. 12 L d T is the attention score and value matmuls at context length T.
    """
    n_matmul = count_params(cfg) - cfg.seq_len * cfg.n_embd
    return 6.0 * n_matmul + 12.0 * cfg.n_layer * cfg.n_embd * cfg.seq_len


def device_peak_flops(device: torch.device, mixed_precision: str) -> float | None:
    """Peak FLOP/s of one device for the run's precision, or None when unknown (CPU, fp32, unlisted GPU)."""
    if device.type != "cuda" or mixed_precision not in ("bf16", "fp16"):
        return None
    return gpu_peak_flops(torch.cuda.get_device_name(device))


def gpu_peak_flops(device_name: str) -> float | None:
    """The bf16 dense peak of the first listed GPU whose name appears as whole words in `device_name`."""
    for pattern, peak in GPU_PEAK_BF16_FLOPS:
        if re.search(rf"(?<!\w){re.escape(pattern)}(?!\w)", device_name):
            return peak
    return None
