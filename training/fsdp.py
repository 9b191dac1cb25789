"""FSDP as launched: what the run was asked for, what it got, sharding on CPU processes too, its bf16
policy, and a plain model for `final/`.

`accelerate launch --config_file configs/accelerate/fsdp-8gpu.yaml` sets `ACCELERATE_USE_FSDP` and the
`FSDP_*` variables; Accelerate 1.15 then shards on GPUs but prepares plain DDP on CPU processes (its FSDP
switch only looks at GPU-like distributed types), although torch's FSDP2 (`fully_shard`) runs on CPU
over gloo. Rather than let a requested FSDP run silently become DDP, a multi-process CPU run that was
launched with an FSDP2 config gets Accelerate's own FSDP2 path: the same `fully_shard` wrapping per
block, DCP sharded checkpoints and gathered `get_state_dict` as on GPUs. That is also how the loop's
sharded code is tested without a GPU. Hand-written because Accelerate has no switch for it: it only sets
the two fields Accelerate's GPU branch would have set (`AcceleratorState.__init__`, FSDP case).
"""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from torch.distributed.fsdp import MixedPrecisionPolicy

from ..modeling import NanoGPT2LMHeadModel


def fsdp_requested() -> bool:
    """Whether the launcher asked for FSDP (`accelerate launch` with `distributed_type: FSDP`)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def cpu_fsdp_plugin(on_cpu: bool) -> FullyShardedDataParallelPlugin | None:
    """The FSDP2 plugin of the launch config (read from `FSDP_*`) for a multi-process CPU run, else None
    (GPU runs: Accelerate builds and applies it itself)."""
    if not (on_cpu and fsdp_requested() and PartialState(cpu=True).num_processes > 1):
        return None
    plugin = FullyShardedDataParallelPlugin()
    return plugin if plugin.fsdp_version == 2 else None  # FSDP1 on CPU: left to Accelerate (DDP)


def shard_on_cpu(accelerator: Accelerator, plugin: FullyShardedDataParallelPlugin) -> None:
    """Make `accelerator.prepare` take its FSDP path on gloo CPU processes.

    Both shared states get the type: AcceleratorState copies PartialState's fields whenever it is
    constructed again (as `save_state` does), which would otherwise bring DDP back.
    """
    if accelerator.distributed_type != DistributedType.MULTI_CPU:
        return
    PartialState().distributed_type = DistributedType.FSDP
    state = AcceleratorState()
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)


def fp32_reductions_and_outputs(accelerator: Accelerator) -> None:
    """Under FSDP2 with bf16, keep the gradient reduction and the model's outputs in fp32.

    Accelerate's bf16 policy also reduces gradients in bf16 and casts every output to bf16: the step's
    gradients would be summed over processes at bf16's 8-bit precision, and the loss (computed in fp32
    by the model) logged with bf16's resolution, 0.016 at a loss of 3. As torchtitan does, parameters
    are gathered in bf16 for the matmuls and gradients reduce-scattered in fp32; outputs stay as the
    model computes them (bf16 logits, an fp32 loss), as under DDP with autocast.
    """
    if accelerator.distributed_type != DistributedType.FSDP:
        return
    plugin = accelerator.state.fsdp_plugin
    policy = plugin.mixed_precision_policy
    if plugin.fsdp_version == 2 and policy is not None and policy.param_dtype not in (None, torch.float32):
        plugin.mixed_precision_policy = MixedPrecisionPolicy(
            param_dtype=policy.param_dtype, reduce_dtype=torch.float32, output_dtype=None,
            cast_forward_inputs=policy.cast_forward_inputs)


def describe_wrapping(accelerator: Accelerator) -> str:
    """What the run actually got, e.g. "FSDP, fsdp_version 2, SHARDED_STATE_DICT" or "MULTI_GPU", with a
    warning when FSDP was requested and not applied, so a fallback is never mistaken for sharding."""
    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        plugin = accelerator.state.fsdp_plugin
        return f"{kind.value}, fsdp_version {plugin.fsdp_version}, {plugin.state_dict_type.name}"
    if fsdp_requested():
        return f"{kind.value}; warning: FSDP was requested but Accelerate prepared {kind.value}, nothing is sharded"
    return kind.value


def is_sharded(accelerator: Accelerator) -> bool:
    """Whether a forward pass is collective (FSDP over several processes): every process must then run
    the same number of them, in evaluation and generation too."""
    return accelerator.distributed_type == DistributedType.FSDP and accelerator.num_processes > 1


def unsharded_model(model: NanoGPT2LMHeadModel, state_dict: dict[str, torch.Tensor]) -> NanoGPT2LMHeadModel:
    """A plain NanoGPT2LMHeadModel holding `state_dict` (the gathered weights), with `model`'s config and
    generation config, its output layer tied to the embedding again (the gathered copies are two tensors).
    `fully_shard` swaps a model's class for a generated `FSDPNanoGPT2LMHeadModel` defined in torch's FSDP
    module, which `save_pretrained` would copy to the Hub as the model's code."""
    with torch.device("meta"):  # no memory for weights that are replaced at once
        plain = NanoGPT2LMHeadModel(model.config)
    plain.load_state_dict(state_dict, assign=True)
    plain.tie_weights()
    plain.generation_config = model.generation_config
    return plain
