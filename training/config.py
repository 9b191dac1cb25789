"""Run configuration: typed dataclasses, YAML presets and dotted `key=value` overrides (OmegaConf).

The defaults are the GPT-2 small (124M) reproduction; a preset in `configs/` lists only what differs.
Every field carries its own docstring (the string literal below it), shown by `--help-config`, and
`__post_init__` checks its value, so a bad preset or override fails before any work starts, naming the
dotted key. OmegaConf merges defaults <- preset <- overrides and checks types; this module only
translates its errors into one line that names the key and lists the valid ones.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from ..evaluation import STYLES
from ..modeling import NanoGPT2Config
from ..utils import InputError

AUTO_MICRO_BATCH = "auto"
"""`train.micro_batch_size` value that asks the Trainer for the largest micro-batch that fits the device."""


class ConfigError(InputError):
    """A preset or override names an unknown key or gives a value of the wrong type or range."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _check_choice(value: str, choices: tuple[str, ...], key: str) -> None:
    _check(value in choices, key, f"must be one of {', '.join(choices)}, got {value!r}")


@dataclass
class ModelConfig:
    """Architecture of the GPT-2 style model (`nanogpt2.modeling.NanoGPT2Config`)."""

    n_layer: int = 12
    """Number of transformer blocks."""
    n_head: int = 12
    """Attention heads per block; must divide `n_embd`."""
    n_embd: int = 768
    """Width of the residual stream."""
    seq_len: int = 1024
    """Context length T: size of the position table and length of every training sequence."""
    vocab_size: int = 50304
    """Embedding rows, padded above the tokenizer's size (50257 -> 50304 = 64 * 786) for fast matmuls."""
    dropout: float = 0.0
    """Dropout on embeddings, attention and residual branches (0 for pretraining at this scale)."""

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "seq_len", "vocab_size"):
            _check(getattr(self, name) > 0, f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        _check(self.n_embd % self.n_head == 0, "model.n_embd",
               f"must be divisible by model.n_head ({self.n_head}), got {self.n_embd}")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")

    def take_architecture(self, source: NanoGPT2Config) -> None:
        """Adopt the shape of pretrained weights (`init_from`); `seq_len`, the training length, must fit them."""
        _check(self.seq_len <= source.n_positions, "model.seq_len",
               f"{self.seq_len} is longer than the {source.n_positions} positions of init_from's model")
        self.n_layer, self.n_head, self.n_embd, self.vocab_size, self.dropout = (
            source.n_layer, source.n_head, source.n_embd, source.vocab_size, source.resid_pdrop)

    def to_hf_config(self, tokenizer_vocab_size: int, eot_id: int) -> NanoGPT2Config:
        """The model's transformers config; ids from `tokenizer_vocab_size` up are vocabulary padding."""
        _check(self.vocab_size >= tokenizer_vocab_size, "model.vocab_size",
               f"{self.vocab_size} is smaller than the tokenizer's {tokenizer_vocab_size} ids")
        return NanoGPT2Config(
            vocab_size=self.vocab_size, n_positions=self.seq_len, n_embd=self.n_embd, n_layer=self.n_layer,
            n_head=self.n_head, embd_pdrop=self.dropout, attn_pdrop=self.dropout, resid_pdrop=self.dropout,
            tokenizer_vocab_size=tokenizer_vocab_size, bos_token_id=eot_id, eos_token_id=eot_id,
        )


@dataclass
class DataConfig:
    """Where the prepared token data lives (written by `nanogpt2.data.prepare_data`)."""

    path: str | None = None
    """Folder of prepared data (`train/`, `val/`, `tokenizer/`, `meta.json`); required to train."""
    tokenizer: str | None = None
    """Tokenizer name or folder; None uses the one saved with the data. It must match the data's hash."""
    shuffle: bool = False
    """Shuffle the order of training sequences each epoch (seeded by `seed`); False reads in order."""


@dataclass
class TrainConfig:
    """Optimisation: batch, schedule, AdamW, precision."""

    micro_batch_size: int | str = 64
    """Sequences per forward/backward on one process (B), or 'auto': the largest power of two dividing
    total_batch_tokens / (seq_len x world size) that fits the device (halved on out-of-memory; on a CPU at most
    8,192 tokens), found before training; the run's config.yaml and checkpoints hold the size found, and a resume
    keeps it."""
    total_batch_tokens: int = 524_288
    """Tokens per optimizer step over all processes; must be a multiple of B * T * world size."""
    max_steps: int = 19_073
    """Optimizer steps to train for (19,073 x 524,288 ~ 10B tokens)."""
    epochs: float | None = None
    """Passes over the training split instead of `max_steps` (the steps they take, rounded up); None: `max_steps`."""
    lr: float = 6e-4
    """Peak learning rate, reached at the end of warmup."""
    min_lr_ratio: float = 0.1
    """Learning rate at `max_steps` as a fraction of `lr` (end of the cosine decay)."""
    warmup_steps: int = 715
    """Steps of linear warmup from 0 to `lr`."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay, applied to matrices and embeddings only (not biases or LayerNorm)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW (beta1, beta2)."""
    eps: float = 1e-8
    """AdamW epsilon."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping (the norm is still logged)."""
    optimizer: str = "adamw"
    """'adamw', or 'muon': torch.optim.Muon for the blocks' 2-D matrices, AdamW (`lr`) for the rest."""
    muon_lr: float = 0.02
    """Muon's peak learning rate (same warmup and decay as `lr`); modded-nanogpt's and nanochat's 0.02."""
    muon_momentum: float = 0.95
    """Muon's Nesterov momentum."""
    muon_weight_decay: float = 0.0
    """Muon's decoupled weight decay (multiplied by its LR, like AdamW's); 0 as in modded-nanogpt and nanochat."""
    mixed_precision: str = "auto"
    """'auto' (bf16 on a GPU that supports it, else fp32), 'bf16', 'fp16' or 'no'."""
    compile: bool = False
    """Compile the model with torch.compile for training (evaluation and generation use the eager model)."""
    tf32: bool = True
    """Allow TF32 matmuls on CUDA (fp32 matmuls that stay outside autocast)."""
    gradient_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of keeping them: less memory, more compute."""

    def __post_init__(self) -> None:
        _check(self.micro_batch_size == AUTO_MICRO_BATCH or (type(self.micro_batch_size) is int and
                                                            self.micro_batch_size > 0),
               "train.micro_batch_size", f"must be > 0 or 'auto', got {self.micro_batch_size!r}")
        for name in ("total_batch_tokens", "max_steps"):
            _check(getattr(self, name) > 0, f"train.{name}", f"must be > 0, got {getattr(self, name)}")
        _check(self.epochs is None or self.epochs > 0, "train.epochs", f"must be > 0 or null, got {self.epochs}")
        _check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _check(0.0 <= self.min_lr_ratio <= 1.0, "train.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        _check(self.warmup_steps >= 0, "train.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "train.betas",
               f"must be two numbers in [0, 1), got {list(self.betas)}")
        _check(self.eps > 0, "train.eps", f"must be > 0, got {self.eps}")
        _check(self.grad_clip >= 0, "train.grad_clip", f"must be >= 0, got {self.grad_clip}")
        _check_choice(self.optimizer, ("adamw", "muon"), "train.optimizer")
        _check(self.muon_lr > 0, "train.muon_lr", f"must be > 0, got {self.muon_lr}")
        _check(0.0 <= self.muon_momentum < 1.0, "train.muon_momentum", f"must be in [0, 1), got {self.muon_momentum}")
        _check(self.muon_weight_decay >= 0, "train.muon_weight_decay", f"must be >= 0, got {self.muon_weight_decay}")
        _check_choice(self.mixed_precision, ("auto", "bf16", "fp16", "no"), "train.mixed_precision")


@dataclass
class EvalConfig:
    """Periodic evaluation: validation loss, HellaSwag and sample generations."""

    every: int = 250
    """Evaluate every this many steps, and at the last step."""
    val_tokens: int = 10_485_760
    """Validation tokens per evaluation, split over processes (rounded down to whole batches, at least one)."""
    hellaswag: bool = True
    """Score HellaSwag at each evaluation (skipped with a one-line reason when the examples cannot be loaded)."""
    hellaswag_path: str | None = None
    """Local HellaSwag jsonl; None loads the validation split from the Hugging Face Hub."""
    hellaswag_limit: int | None = None
    """Score only the first N examples (None: all 10,042)."""
    hellaswag_style: str = "nanogpt"
    """Scoring style passed to `evaluate_hellaswag` ('nanogpt' or 'lm-eval')."""
    hellaswag_batch_size: int = 32
    """Examples per forward pass while scoring HellaSwag."""
    num_samples: int = 4
    """Sample generations per evaluation (0 disables them)."""
    sample_prompt: str = "Hello, I'm a language model,"
    """Prompt of the sample generations."""
    max_new_tokens: int = 32
    """Tokens generated per sample, and per reply to `chat_prompts`."""
    sample_top_k: int = 50
    """Top-k sampling of the sample generations."""

    chat_prompts: list[str] = field(default_factory=lambda: [
        "What is the capital of France?", "Write a short poem about the sea.", "How do I reverse a list in Python?",
        "Give me three tips for sleeping better.", "What is a neural network?", "Say hello in Spanish.",
        "Why is the sky blue?", "Summarize the plot of Romeo and Juliet in one sentence.",
    ])
    """Chat data only: user messages answered greedily at each evaluation; the share of replies that end with
    the end-of-turn token within `max_new_tokens` is logged as `eot_rate`, the replies as samples."""

    def __post_init__(self) -> None:
        for name in ("every", "val_tokens", "hellaswag_batch_size", "sample_top_k", "max_new_tokens"):
            _check(getattr(self, name) > 0, f"eval.{name}", f"must be > 0, got {getattr(self, name)}")
        _check(self.num_samples >= 0, "eval.num_samples", f"must be >= 0, got {self.num_samples}")
        _check(self.hellaswag_limit is None or self.hellaswag_limit > 0, "eval.hellaswag_limit",
               f"must be > 0 or null, got {self.hellaswag_limit}")
        _check_choice(self.hellaswag_style, STYLES, "eval.hellaswag_style")


@dataclass
class CheckpointConfig:
    """Resumable checkpoints under `OUT/checkpoints/step_NNNNNNN/`."""

    every: int = 1000
    """Write a checkpoint every this many steps (and on SIGTERM/SIGINT and at the end)."""
    keep_last: int = 3
    """Keep only the newest this many checkpoints."""

    def __post_init__(self) -> None:
        _check(self.every > 0, "checkpoint.every", f"must be > 0, got {self.every}")
        _check(self.keep_last > 0, "checkpoint.keep_last", f"must be > 0, got {self.keep_last}")


@dataclass
class LoggingConfig:
    """Experiment tracking (Accelerate trackers) and the console."""

    tracker: str = "wandb"
    """'wandb' (set WANDB_MODE=offline to log without an account) or 'none' (metrics.jsonl only)."""
    project: str = "nanogpt2"
    """Tracker project name."""
    run_name: str | None = None
    """Tracker run name; None uses the name of `out_dir`."""
    every: int = 1
    """Log training metrics every this many steps."""

    def __post_init__(self) -> None:
        _check_choice(self.tracker, ("wandb", "none"), "logging.tracker")
        _check(self.every > 0, "logging.every", f"must be > 0, got {self.every}")


@dataclass
class HubConfig:
    """Pushing the model to the Hugging Face Hub (the token comes from `huggingface-cli login` / HF_TOKEN)."""

    push: bool = False
    """Push `OUT/final` to `repo_id` at the end of training (in the background)."""
    repo_id: str | None = None
    """Target model repository, 'user/name'."""
    private: bool = True
    """Create the repository as private."""
    push_checkpoints: bool = False
    """Also push each checkpoint's weights to `checkpoints/step_NNNNNNN/` in the repository."""

    def __post_init__(self) -> None:
        _check(not self.push or bool(self.repo_id), "hub.repo_id", "must be set when hub.push is true")


@dataclass
class RunConfig:
    """Everything one pretraining run needs."""

    out_dir: str = "runs/gpt2-124m"
    """Run folder: metrics.jsonl, config.yaml, checkpoints/, final/, plots/."""
    seed: int = 1337
    """Seed of model initialisation, data order and sampling."""
    init_from: str | None = None
    """Start from these weights, not a fresh init: a nanogpt2 or GPT-2 folder or Hub id, a nanoGPT `.pt` or an
    llm.c `.bin`. Its architecture replaces `model.*` (vocabulary rows included)."""
    resume: str = "auto"
    """'auto' continues from the newest complete checkpoint in out_dir, 'none' starts over, else a path."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model architecture."""
    data: DataConfig = field(default_factory=DataConfig)
    """Prepared data."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpointing."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Tracking."""
    hub: HubConfig = field(default_factory=HubConfig)
    """Hub upload."""

    def __post_init__(self) -> None:
        _check(bool(self.out_dir), "out_dir", "must not be empty")
        _check(bool(self.resume), "resume", "must be 'auto', 'none' or a checkpoint path")

    def grad_accum_steps(self, world_size: int) -> int:
        """Micro-steps per optimizer step so that B * T * world_size * steps == total_batch_tokens."""
        if self.train.micro_batch_size == AUTO_MICRO_BATCH:
            raise ConfigError("train.micro_batch_size: 'auto' has no size until the Trainer probes the device; "
                              "give a number (e.g. train.micro_batch_size=16)")
        per_micro_step = self.train.micro_batch_size * self.model.seq_len * world_size
        if self.train.total_batch_tokens % per_micro_step:
            raise ConfigError(
                f"train.total_batch_tokens: {self.train.total_batch_tokens} is not a multiple of "
                f"train.micro_batch_size x model.seq_len x world size = {self.train.micro_batch_size} x "
                f"{self.model.seq_len} x {world_size} = {per_micro_step}"
            )
        return self.train.total_batch_tokens // per_micro_step

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, as saved to config.yaml and logged to the trackers."""
        return OmegaConf.to_container(OmegaConf.structured(self))  # type: ignore[return-value]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring: the string literal that follows its annotated assignment in the class body."""
    body = ast.parse(inspect.getsource(cls)).body[0].body  # type: ignore[attr-defined]
    return {node.target.id: str(nxt.value.value) for node, nxt in zip(body, body[1:], strict=False)
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)}


def _sections(cls: type) -> dict[str, type]:
    """The fields of `cls` that are sections (dataclasses themselves), by name."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def describe_fields(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, docstring) for every leaf field, in declaration order."""
    rows: list[tuple[str, Any, str]] = []
    docs, sections, default = _field_docs(cls), _sections(cls), cls()
    for f in dataclasses.fields(cls):
        if f.name in sections:
            rows.extend(describe_fields(sections[f.name], f"{prefix}{f.name}."))
        else:
            rows.append((f"{prefix}{f.name}", getattr(default, f.name), docs.get(f.name, "")))
    return rows


def _valid_keys(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _override_type(dotted: str) -> Any:
    """The type of the field `dotted` names; an unknown key, a whole section set to a value, or a key under a
    non-section is a `ConfigError` that lists the valid keys."""
    cls: type = RunConfig
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        sections = _sections(cls)
        if part not in {f.name for f in dataclasses.fields(cls)}:
            raise ConfigError(f"unknown key {dotted}; valid keys{' in ' + where if where else ''}: {_valid_keys(cls)}")
        last = depth == len(parts) - 1
        if last and part in sections:
            raise ConfigError(f"{dotted} is a section; set one of its keys: {_valid_keys(sections[part])}")
        if not last and part not in sections:
            raise ConfigError(f"{'.'.join(parts[: depth + 1])} is not a section (it has no key {parts[depth + 1]})")
        if last:
            return typing.get_type_hints(cls)[part]
        cls = sections[part]


def _explain(error: OmegaConfBaseException) -> str:
    """OmegaConf's multi-line error as one line naming the dotted key (and the valid keys when unknown)."""
    key = getattr(error, "full_key", None)
    owner = getattr(error, "object_type", None)
    if isinstance(error, ConfigKeyError) and key and dataclasses.is_dataclass(owner):
        section = key.rpartition(".")[0]
        return f"unknown key {key}; valid keys{' in ' + section if section else ''}: {_valid_keys(owner)}"
    message = str(getattr(error, "msg", None) or error).splitlines()[0]
    return f"{key}: {message}" if key else message


def _merged(*layers: Any) -> RunConfig:
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), *layers))  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(_explain(error)) from None


def load_config(preset: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Defaults, then the YAML preset (if any), then `key=value` overrides, validated as a whole."""
    layers: list[Any] = []
    if preset is not None:
        path = Path(preset)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping of keys at the top level")
        layers.append(tree)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.max_steps=20)")
        hint = _override_type(key)
        if hint in (str, str | None) and value != "null":
            # A string field keeps the text as typed: YAML would read `no` as false and `1e-3` as a number.
            for part in reversed(key.split(".")):
                value = {part: value}
            layers.append(value)
        else:
            layers.append(OmegaConf.from_dotlist([item]))
    return _merged(*layers)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from `RunConfig.to_dict()` output (e.g. a saved config.yaml)."""
    return _merged(data)


def config_reference_markdown() -> str:
    """The README's configuration reference: one table row per dotted key, with default and meaning."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, default, doc in describe_fields():
        shown = "null" if default is None else yaml.safe_dump(default, default_flow_style=True).strip()
        shown = shown.removesuffix("\n...").removesuffix(" ...").strip()
        rows.append(f"| `{key}` | `{shown}` | {' '.join(doc.split()).replace('|', '/')} |")
    return "\n".join(rows)
