"""nanogpt2.training: run configuration and the Accelerate pretraining loop.

    from nanogpt2.training import load_config, train
    config = load_config("configs/smoke.yaml", ["data.path=data/smoke", "train.max_steps=20"])
    result = train(config)   # writes OUT/metrics.jsonl, checkpoints/, final/, config.yaml, plots/
"""

from .checkpointing import TrainingState, list_checkpoints, resolve_resume
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
    describe_fields,
    load_config,
)
from .hub import HubPusher
from .loop import NonFiniteLossError, TrainResult, train
from .mfu import count_params, device_peak_flops, flops_per_token
from .optim import build_optimizer, build_scheduler

__all__ = [
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "HubConfig",
    "HubPusher",
    "LoggingConfig",
    "ModelConfig",
    "NonFiniteLossError",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingState",
    "build_optimizer",
    "build_scheduler",
    "config_from_dict",
    "count_params",
    "describe_fields",
    "device_peak_flops",
    "flops_per_token",
    "list_checkpoints",
    "load_config",
    "resolve_resume",
    "train",
]
