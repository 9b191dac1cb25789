"""nanogpt2.training: the run configuration and the Accelerate training loop with its checkpoints.

    from nanogpt2.training import load_config, train
    config = load_config("configs/smoke.yaml", ["data.path=prepared/smoke", "train.max_steps=20"])
    result = train(config)   # writes OUT/metrics.jsonl, checkpoints/, final/, config.yaml, plots/
"""

from .checkpointing import CheckpointError, TrainingState, list_checkpoints, resolve_resume
from .config import (
    CheckpointConfig,
    ConfigError,
    DataConfig,
    EvalConfig,
    HubConfig,
    LoggingConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    config_from_dict,
    config_reference_markdown,
    describe_fields,
    load_config,
)
from .mfu import count_params, device_peak_flops, flops_per_token, gpu_peak_flops
from .optim import build_optimizer, build_scheduler
from .trainer import NonFiniteLossError, Trainer, TrainResult, train

__all__ = [
    "CheckpointConfig",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "HubConfig",
    "LoggingConfig",
    "ModelConfig",
    "NonFiniteLossError",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingState",
    "build_optimizer",
    "build_scheduler",
    "config_from_dict",
    "config_reference_markdown",
    "count_params",
    "describe_fields",
    "device_peak_flops",
    "flops_per_token",
    "gpu_peak_flops",
    "list_checkpoints",
    "load_config",
    "resolve_resume",
    "train",
]
