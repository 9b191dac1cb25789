"""What a run will cost before it starts: parameters, FLOPs, memory per GPU and time at a given MFU.

FLOPs come from `training.mfu` (`count_params`, `flops_per_token`: the formulas the loop reports MFU with)
and peak FLOP/s from its GPU table (`gpu_peak_flops`), so the time predicted here and the MFU measured
there agree by construction. Time = FLOPs per token x tokens per step x steps / (GPUs x peak x MFU).

Memory per GPU, for AdamW under Accelerate's mixed precision (fp32 weights, autocast to bf16):

- training state, 16 N bytes for N parameters: fp32 weights, gradients, AdamW's exp_avg and exp_avg_sq
  (4 each). DDP keeps all of it on every GPU; FSDP shards it over the GPUs.
- weights for compute, 2 N' bytes: autocast's bf16 copy of each matmul weight (N' = `n_matmul_params`),
  kept by autograd for the backward; counted under FSDP too, where it is an upper bound.
- activations: what autograd saves in the forward for the backward, per micro-batch of B sequences of T
  tokens (width d, H heads, L blocks, V vocabulary rows). p is the size of a tensor autocast computes in
  (2 bytes in bf16/fp16, 4 in fp32); the residual stream, LayerNorm and the loss stay fp32 (4 bytes):

      per block and token   p * 14d              c_attn's input (d); q, k, v (3d, one tensor); the
                                                 attention output, which is c_proj's input (d); c_fc's
                                                 input (d); GELU's input (4d); MLP c_proj's input (4d)
                          + 4 * (2d + H + 4)     ln_1's and ln_2's fp32 input (2d) with their mean and
                                                 1/std (4); the attention's log-sum-exp per head (H)
      head, per token       p * d + 4 * (d + 2)  lm_head's input; ln_f's input, mean and 1/std
                          + 4V                   the fp32 log-softmax the loss keeps
                          + 16                   input id and target (int64)
      per micro-batch       8T + 4               position ids; the loss's scalar

      activations = B*T * (L * block + head) + 8T + 4

  In bf16 a block keeps 36d + 4H + 16 bytes per token. SDPA's flash and memory-efficient kernels keep
  only the log-sum-exp, never the T x T scores, so nothing grows with T^2. With
  `train.gradient_checkpointing` a block keeps only its fp32 input (4d per token) and the backward
  recomputes one block at a time, whose full activations are added once at the peak.
  `tests/test_estimate.py` checks the formula byte for byte against the tensors autograd saves (counted
  with `torch.autograd.graph.saved_tensors_hooks`) for a tiny model in fp32 on CPU (p = 4).
- the loss head's transient: at the start of the backward two fp32 (B, T, V) gradients (log-softmax's
  and the logits') exist at once beside the saved activations: 8V bytes per token. With checkpointing
  the recomputed block is added to it, although the two never coincide: the peak is an upper bound.

Not counted: the CUDA context, cuBLAS/NCCL workspaces and allocator fragmentation (a few GiB), dropout
masks (the presets train with dropout 0), FSDP's gathered block being resharded, and torch.compile, which
fuses and usually keeps fewer tensors (eager is the upper bound here).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..utils import InputError
from .config import ModelConfig, RunConfig
from .mfu import GPU_PEAK_BF16_FLOPS, count_params, flops_per_token, gpu_peak_flops

FP32_BYTES = 4
INT64_BYTES = 8
# Bytes per element of an autocast tensor, by `train.mixed_precision` ('auto' is bf16 on a GPU).
COMPUTE_BYTES = {"auto": 2, "bf16": 2, "fp16": 2, "no": FP32_BYTES}
ADAMW_STATE_BYTES_PER_PARAM = 16  # fp32 weight, gradient, exp_avg, exp_avg_sq


def n_matmul_params(cfg: ModelConfig) -> int:
    """Parameters that enter a matmul (all but the position embedding), as in `flops_per_token`."""
    return count_params(cfg) - cfg.seq_len * cfg.n_embd


def block_bytes_per_token(cfg: ModelConfig, compute_bytes: int) -> int:
    """Bytes one transformer block saves for the backward, per token (formula in the module docstring)."""
    d = cfg.n_embd
    return compute_bytes * 14 * d + FP32_BYTES * (2 * d + cfg.n_head + 4)


def saved_activation_bytes(
    cfg: ModelConfig, micro_batch_size: int, compute_bytes: int = 2, gradient_checkpointing: bool = False
) -> int:
    """Bytes autograd holds between the forward and the backward of one micro-batch (B = micro_batch_size)."""
    d, tokens = cfg.n_embd, micro_batch_size * cfg.seq_len
    block = FP32_BYTES * d if gradient_checkpointing else block_bytes_per_token(cfg, compute_bytes)
    head = compute_bytes * d + FP32_BYTES * (d + 2) + FP32_BYTES * cfg.vocab_size + 2 * INT64_BYTES
    return tokens * (cfg.n_layer * block + head) + INT64_BYTES * cfg.seq_len + FP32_BYTES


def transient_activation_bytes(
    cfg: ModelConfig, micro_batch_size: int, compute_bytes: int = 2, gradient_checkpointing: bool = False
) -> int:
    """Bytes that exist only for a moment in the backward: the loss's two fp32 (B, T, V) gradients, and with
    checkpointing the one block being recomputed."""
    tokens = micro_batch_size * cfg.seq_len
    recomputed = block_bytes_per_token(cfg, compute_bytes) if gradient_checkpointing else 0
    return tokens * (2 * FP32_BYTES * cfg.vocab_size + recomputed)


def resolve_gpu(name: str) -> tuple[str, float]:
    """(name, bf16 dense peak FLOP/s) of a GPU named as in `training.mfu`'s table ('H100', 'h100 pcie',
    'RTX 4090' or just '4090') or as `torch.cuda.get_device_name()` prints it; unknown -> InputError."""
    wanted = " ".join(name.split()).lower()
    for pattern, _ in GPU_PEAK_BF16_FLOPS:
        if wanted in (pattern.lower(), pattern.lower().removeprefix("rtx ")):
            return pattern, float(gpu_peak_flops(pattern))
    peak = gpu_peak_flops(name)
    if peak is None:
        known = ", ".join(pattern for pattern, _ in GPU_PEAK_BF16_FLOPS)
        raise InputError(f"--gpu {name!r}: no known peak FLOP/s; known GPUs: {known}")
    return name, peak


@dataclass(frozen=True)
class RunEstimate:
    """Everything `nanogpt2 estimate` prints; bytes are per GPU, FLOPs and time for the whole run."""

    n_layer: int
    n_head: int
    n_embd: int
    seq_len: int
    vocab_size: int
    params: int
    flops_per_token: float
    micro_batch_size: int
    num_gpus: int
    grad_accum_steps: int
    tokens_per_step: int
    steps: int | None
    """None when `train.epochs` sets the steps from the prepared data."""
    total_tokens: int | None
    total_flops: float | None
    precision: str
    gradient_checkpointing: bool
    state_bytes_ddp: int
    state_bytes_fsdp: int
    compute_weight_bytes: int
    activation_bytes: int
    transient_bytes: int
    peak_bytes_ddp: int
    peak_bytes_fsdp: int
    gpu: str
    gpu_peak_flops: float
    mfu: float
    tokens_per_second: float
    seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def estimate_run(config: RunConfig, gpu: str = "H100", mfu: float = 0.4, num_gpus: int = 1) -> RunEstimate:
    """The cost of training `config` on `num_gpus` GPUs named `gpu` that reach `mfu` of their bf16 peak."""
    if not 0.0 < mfu <= 1.0:
        raise InputError(f"--mfu must be in (0, 1], got {mfu}")
    if num_gpus < 1:
        raise InputError(f"--num-gpus must be >= 1, got {num_gpus}")
    gpu_name, peak = resolve_gpu(gpu)
    model, train_cfg = config.model, config.train
    accum = config.grad_accum_steps(num_gpus)  # ConfigError when the batch does not divide
    compute_bytes = COMPUTE_BYTES[train_cfg.mixed_precision]
    checkpointing = train_cfg.gradient_checkpointing
    params, per_token = count_params(model), flops_per_token(model)
    steps = None if train_cfg.epochs is not None else train_cfg.max_steps
    total_tokens = None if steps is None else steps * train_cfg.total_batch_tokens
    total_flops = None if total_tokens is None else per_token * total_tokens
    state = ADAMW_STATE_BYTES_PER_PARAM * params
    compute_weights = compute_bytes * n_matmul_params(model) if compute_bytes < FP32_BYTES else 0
    saved = saved_activation_bytes(model, train_cfg.micro_batch_size, compute_bytes, checkpointing)
    transient = transient_activation_bytes(model, train_cfg.micro_batch_size, compute_bytes, checkpointing)
    tokens_per_second = num_gpus * peak * mfu / per_token
    return RunEstimate(
        n_layer=model.n_layer, n_head=model.n_head, n_embd=model.n_embd, seq_len=model.seq_len,
        vocab_size=model.vocab_size, params=params, flops_per_token=per_token,
        micro_batch_size=train_cfg.micro_batch_size, num_gpus=num_gpus, grad_accum_steps=accum,
        tokens_per_step=train_cfg.total_batch_tokens, steps=steps, total_tokens=total_tokens,
        total_flops=total_flops, precision="bf16" if train_cfg.mixed_precision == "auto" else train_cfg.mixed_precision,
        gradient_checkpointing=checkpointing, state_bytes_ddp=state, state_bytes_fsdp=-(-state // num_gpus),
        compute_weight_bytes=compute_weights, activation_bytes=saved, transient_bytes=transient,
        peak_bytes_ddp=state + compute_weights + saved + transient,
        peak_bytes_fsdp=-(-state // num_gpus) + compute_weights + saved + transient,
        gpu=gpu_name, gpu_peak_flops=peak, mfu=mfu, tokens_per_second=tokens_per_second,
        seconds=None if total_tokens is None else total_tokens / tokens_per_second,
    )
