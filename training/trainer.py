"""The training loop: `Trainer(config).fit()` with Accelerate (device, precision, DDP or FSDP2, accumulation, trackers).

`Trainer.__init__` reads as its phases: accelerator, data, model, restore, tracking, evaluation,
publishing. `fit` then runs optimizer steps, evaluating every `eval.every` steps and checkpointing every
`checkpoint.every` steps (and on SIGTERM/SIGINT), and writes the Hub-ready `OUT/final/` at the end.
Every number goes through `accelerator.log` (metrics.jsonl, and wandb when enabled), once.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..data import IGNORE_INDEX, TokenLoader, load_data_tokenizer, load_meta, tokenizer_fingerprint
from ..data.chat_template import add_chat_template
from ..evaluation import chat_replies, end_of_turn_rate
from ..modeling import NanoGPT2LMHeadModel, load_gpt2
from ..publishing import HubPublisher, render_model_card
from ..reporting import write_run_plots
from ..utils import InputError, read_jsonl, write_text
from .batch_size import auto_micro_batch_size, saved_micro_batch_size
from .checkpointing import (
    TrainingState,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temporaries,
    resolve_resume,
    save_checkpoint,
    set_aside,
)
from .config import AUTO_MICRO_BATCH, ConfigError, ModelConfig, RunConfig
from .fsdp import (
    cpu_fsdp_plugin,
    describe_wrapping,
    fp32_reductions_and_outputs,
    is_sharded,
    shard_on_cpu,
    unsharded_model,
)
from .mfu import count_params, device_peak_flops, flops_per_token
from .optim import build_optimizer, build_scheduler
from .periodic_eval import hellaswag_scores, load_hellaswag_examples, sample_texts, validation_loss
from .signals import StopRequest
from .tracking import JsonlTracker


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient norm; nothing of that state was saved."""


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    tokens: int
    stopped_by: str | None
    """Name of the signal that stopped the run early, None when it reached `train.max_steps`."""
    final_dir: Path | None


def resolve_mixed_precision(requested: str) -> str:
    if requested != "auto":
        return requested
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def build_model(model_config: ModelConfig, tokenizer_size: int, eot_id: int) -> NanoGPT2LMHeadModel:
    """A freshly initialised model (GPT-2's init, seeded by the caller); end-of-text pads generation."""
    model = NanoGPT2LMHeadModel(model_config.to_hf_config(tokenizer_size, eot_id))
    model.generation_config.pad_token_id = eot_id
    return model


def load_tokenizer(config: RunConfig, meta: dict[str, Any]) -> PreTrainedTokenizerBase:
    """The data's own tokenizer, or `data.tokenizer` after checking it is the one the data was made with."""
    if config.data.tokenizer is None:
        return load_data_tokenizer(config.data.path)
    tokenizer = AutoTokenizer.from_pretrained(config.data.tokenizer)
    found, expected = tokenizer_fingerprint(tokenizer), meta.get("tokenizer_hash")
    if found != expected:
        raise ConfigError(
            f"data.tokenizer: {config.data.tokenizer} (hash {found}) is not the tokenizer the data in "
            f"{config.data.path} was prepared with (hash {expected}); unset data.tokenizer to use the data's own"
        )
    return tokenizer


class Trainer:
    """One pretraining run: its Accelerator, data, model, optimizer, checkpoints and trackers."""

    def __init__(self, config: RunConfig) -> None:
        if not config.data.path:
            raise ConfigError("data.path: required (a folder written by `nanogpt2 prepare`)")
        self.config = config
        self.out = Path(config.out_dir)
        self._setup_accelerator()
        self._setup_data()
        self._setup_model()
        self._restore()
        self._setup_tracking()
        self._setup_evaluation()
        self._setup_publishing()

    def _setup_accelerator(self) -> None:
        cfg = self.config
        # cpu=True on a machine without an accelerator is what makes torchrun / multi-process launches
        # use gloo DDP (MULTI_CPU) instead of silently running each process alone.
        on_cpu = not torch.accelerator.is_available()
        auto_batch = cfg.train.micro_batch_size == AUTO_MICRO_BATCH  # the steps are set once the size is found
        self.accum = 1 if auto_batch else cfg.grad_accum_steps(PartialState(cpu=on_cpu).num_processes)
        self.mixed_precision = resolve_mixed_precision(cfg.train.mixed_precision)
        self.jsonl = JsonlTracker(self.out, resume_step=0)  # the resume step is set once it is known
        fsdp_plugin = cpu_fsdp_plugin(on_cpu)  # None unless CPU processes were launched with an FSDP2 config
        self.accelerator = acc = Accelerator(
            cpu=on_cpu,
            mixed_precision=self.mixed_precision,
            gradient_accumulation_steps=self.accum,
            log_with=[self.jsonl, "wandb"] if cfg.logging.tracker == "wandb" else [self.jsonl],
            project_dir=str(self.out),
            # The schedule is defined per optimizer step, not per process: step it once per step.
            step_scheduler_with_optimizer=False,
            dynamo_backend="inductor" if cfg.train.compile else "no",
            fsdp_plugin=fsdp_plugin,
        )
        if fsdp_plugin is not None:
            shard_on_cpu(acc, fsdp_plugin)
        fp32_reductions_and_outputs(acc)
        self.is_main = acc.is_main_process
        if acc.device.type == "cuda" and cfg.train.tf32:
            torch.set_float32_matmul_precision("high")  # TF32 for the fp32 matmuls left outside autocast
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out)
        acc.wait_for_everyone()
        # Decided first: the checkpoint's config fixes what `auto` settings became (train.micro_batch_size).
        self.resumed_from = resolve_resume(cfg.resume, self.out, self.log)

    def _setup_data(self) -> None:
        cfg = self.config
        try:
            self.meta = load_meta(cfg.data.path)
        except InputError as error:
            raise ConfigError(f"data.path: {error}") from None
        self.tokenizer = load_tokenizer(cfg, self.meta)
        self.eot_id = int(self.meta.get("eot_id", self.tokenizer.eos_token_id))
        self.chat = self.meta.get("content") == "chat"  # conversations: loss on the assistant's tokens only

    def _setup_loader(self) -> None:
        cfg, acc = self.config, self.accelerator
        self.loader = TokenLoader(
            cfg.data.path, "train", batch_size=cfg.train.micro_batch_size, seq_len=cfg.model.seq_len,
            rank=acc.process_index, world_size=acc.num_processes, seed=cfg.seed,
            shuffle=cfg.data.shuffle, tokenizer=self.tokenizer,
        )
        if cfg.train.epochs is not None:  # the schedule is built from max_steps: fix it before the optimizer
            epoch_steps = self.loader.tokens_per_epoch / cfg.train.total_batch_tokens
            cfg.train.max_steps = math.ceil(cfg.train.epochs * epoch_steps)
            self.log(f"train.epochs={cfg.train.epochs:g}: {cfg.train.max_steps} steps")

    def _setup_model(self) -> None:
        cfg, acc = self.config, self.accelerator
        set_seed(cfg.seed)
        if cfg.init_from:
            model = self._pretrained_model()
        else:
            model = build_model(cfg.model, len(self.tokenizer), self.eot_id)
        if cfg.train.gradient_checkpointing:
            model.activation_checkpointing_enable()
        if self.tokenizer.chat_template:  # a reply ends at the end-of-turn token, not only at end-of-text
            model.generation_config.eos_token_id = add_chat_template(self.tokenizer)
        model = model.to(acc.device)
        self._setup_micro_batch(model)  # probes the model before it is wrapped (DDP), so without collectives
        self._setup_loader()  # needs the micro-batch size; the schedule below needs the epoch's steps
        optimizer = build_optimizer(model, cfg.train, acc.device)
        scheduler = build_scheduler(optimizer, cfg.train)
        self.model, self.optimizer, self.scheduler = acc.prepare(model, optimizer, scheduler)
        self.state = TrainingState()
        acc.register_for_checkpointing(self.state)

    def _setup_micro_batch(self, model: NanoGPT2LMHeadModel) -> None:
        """`train.micro_batch_size=auto`: a resumed run keeps its checkpoint's size, a new one takes the largest
        that fits the device; the config then holds the number, so config.yaml and checkpoints record it."""
        cfg, acc = self.config, self.accelerator
        if cfg.train.micro_batch_size != AUTO_MICRO_BATCH:
            return
        if self.resumed_from is not None:
            cfg.train.micro_batch_size, found_by = saved_micro_batch_size(self.resumed_from), "kept from the checkpoint"
        else:
            cfg.train.micro_batch_size = auto_micro_batch_size(
                model, cfg.train.total_batch_tokens, cfg.model.seq_len, acc, self.log)
            found_by = "the largest that fits"
        self.accum = acc.gradient_accumulation_steps = cfg.grad_accum_steps(acc.num_processes)
        self.log(f"train.micro_batch_size=auto: {cfg.train.micro_batch_size} ({found_by}), "
                 f"{self.accum} micro-step(s) per optimizer step")

    def _pretrained_model(self) -> NanoGPT2LMHeadModel:
        """`init_from`'s weights; the run takes their architecture, and the data's tokenizer may add ids (chat
        markers) in the embedding's spare rows, which the model then predicts too."""
        cfg = self.config
        try:
            model = load_gpt2(cfg.init_from)
        except (OSError, ValueError) as error:
            raise ConfigError(f"init_from: cannot load {cfg.init_from!r}: {str(error).splitlines()[0]}") from None
        cfg.model.take_architecture(model.config)
        n_tokens = len(self.tokenizer)
        if n_tokens > model.config.vocab_size:
            raise ConfigError(f"init_from: {cfg.init_from} has {model.config.vocab_size} embedding rows, fewer than "
                              f"the {n_tokens} ids of the data's tokenizer ({cfg.data.path})")
        model.config.tokenizer_vocab_size = max(model.config.num_real_tokens, n_tokens)
        model.generation_config.pad_token_id = self.eot_id
        self.log(f"init_from: {cfg.init_from} ({model.num_parameters():,} parameters, "
                 f"{model.config.n_layer} layers x {model.config.n_embd})")
        return model

    def _restore(self) -> None:
        """Continue from a checkpoint (per `resume`), or start fresh; then clear checkpoints past the start."""
        if self.resumed_from is not None:
            self.loader.load_state_dict(load_checkpoint(self.accelerator, self.resumed_from))
            self.log(f"resumed from {self.resumed_from} (step {self.state.step}, {self.state.tokens:,} tokens)")
        elif self.config.logging.tracker == "wandb":
            self.state.tracker_run_id = uuid.uuid4().hex[:8]  # chosen here so checkpoints can carry it
        self._clear_later_checkpoints()
        self.batches = iter(self.loader)

    def _clear_later_checkpoints(self) -> None:
        """Checkpoints past the starting step are either damaged (`resume=auto` skipped them: set aside,
        kept) or an abandoned trajectory (`resume=PATH` rolled back: deleted, as their metrics records
        are); `resume=none` refuses to start over in a folder that holds checkpoints."""
        later = [p for p in list_checkpoints(self.out) if checkpoint_step(p) > self.state.step]
        if not later:
            return
        if self.config.resume == "none":
            raise ConfigError(f"resume: 'none' would start over in {self.out}, which holds checkpoints "
                              f"({later[-1].name}, ...); use a new out_dir, or resume=auto to continue")
        self.accelerator.wait_for_everyone()
        if self.is_main:
            for path in later:
                if self.config.resume == "auto":
                    self.log(f"damaged checkpoint {path} set aside as {set_aside(path)}")
                else:
                    self.log(f"deleting {path}: it comes after the checkpoint resumed from")
                    shutil.rmtree(path)
        self.accelerator.wait_for_everyone()

    def _setup_tracking(self) -> None:
        cfg = self.config
        self.config_yaml = cfg.to_yaml()
        if self.is_main:
            write_text(self.out / "config.yaml", self.config_yaml)
        self.jsonl.resume_step = self.state.step  # steps after it are trained, and logged, again
        self.accelerator.init_trackers(
            cfg.logging.project, config=cfg.to_dict(),
            init_kwargs={"wandb": {"name": cfg.logging.run_name or self.out.name, "id": self.state.tracker_run_id,
                                   "resume": "allow", "dir": str(self.out)}},
        )

    def _setup_evaluation(self) -> None:
        self.hellaswag = load_hellaswag_examples(self.config, self.log)
        self.flops_per_token = flops_per_token(self.config.model)
        self.peak_flops = device_peak_flops(self.accelerator.device, self.mixed_precision)

    def _setup_publishing(self) -> None:
        hub = self.config.hub
        self.publisher = HubPublisher(hub.repo_id or "", private=hub.private, log=self.log) \
            if hub.push and self.is_main else None

    def log(self, message: str) -> None:
        if self.is_main:
            tqdm.write(message)

    def _record(self, values: dict[str, Any], step: int, samples: list[str] = ()) -> None:
        """Send one record (and sample texts) to every tracker."""
        self.accelerator.log(values, step=step)
        if samples and self.is_main:
            for tracker in self.accelerator.trackers:
                tracker.log_table("samples", columns=["text"], data=[[text] for text in samples], step=step)

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `accum` micro-batches; returns the step's metrics."""
        acc, cfg = self.accelerator, self.config
        t0 = time.perf_counter()
        batches = [next(self.batches) for _ in range(self.accum)]  # (B, T) int64 x, y; y is x shifted by one
        # The step's loss is the mean over every scored target of every micro-batch on every process: chat
        # data scores only the assistant's tokens, so micro-batches hold different counts (even none).
        # backward() divides by `accum` and DDP averages over processes; dividing each micro-batch's summed
        # loss by targets / (accum * processes) makes the gradient that of the step's mean.
        targets = torch.tensor(float(sum(int((y != IGNORE_INDEX).sum()) for _, y in batches)), device=acc.device)
        targets = acc.reduce(targets, "sum") if acc.num_processes > 1 else targets
        per_micro_step = targets.clamp(min=1) / (self.accum * acc.num_processes)
        loss_sum = torch.zeros((), device=acc.device)
        for x, y in batches:
            x, y = x.to(acc.device, non_blocking=True), y.to(acc.device, non_blocking=True)
            # accumulate() skips the DDP all-reduce except on the last micro-step.
            with acc.accumulate(self.model):
                loss = self.model(input_ids=x, shift_labels=y, num_items_in_batch=per_micro_step).loss
                loss_sum += loss.detach()
                acc.backward(loss)
        max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")
        grad_norm = float(acc.clip_grad_norm_(self.model.parameters(), max_norm))
        loss_value = acc.reduce(loss_sum / self.accum, "mean").item()  # mean over processes, synchronises
        step = self.state.step + 1
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            raise NonFiniteLossError(
                f"non-finite {'loss' if not math.isfinite(loss_value) else 'gradient norm'} at step {step} "
                f"(loss {loss_value}, grad norm {grad_norm}); stopped without saving this state. "
                f"Newest checkpoint: {(list_checkpoints(self.out) or ['none'])[-1]}"
            )
        lr = self.scheduler.get_last_lr()[0]  # the LR this update uses
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step = step
        self.state.tokens += cfg.train.total_batch_tokens
        dt = time.perf_counter() - t0
        tokens_per_s = cfg.train.total_batch_tokens / dt
        record = {"tokens": self.state.tokens, "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                  "tokens_per_s": tokens_per_s, "step_time_s": dt}
        if self.peak_flops is not None:
            record["mfu"] = self.flops_per_token * tokens_per_s / (self.peak_flops * acc.num_processes)
        return record

    def evaluate(self, step: int) -> dict[str, Any]:
        acc, cfg = self.accelerator, self.config
        record: dict[str, Any] = {"tokens": self.state.tokens,
                                  "val_loss": validation_loss(self.model, acc, cfg, self.tokenizer)}
        eager = acc.unwrap_model(self.model, keep_torch_compile=False)
        if self.chat:
            replies = chat_replies(eager, self.tokenizer, cfg.eval.chat_prompts, max_new_tokens=cfg.eval.max_new_tokens,
                                   synced_gpus=is_sharded(acc))
            record["eot_rate"] = end_of_turn_rate(replies)
        if self.hellaswag:
            try:
                record.update(hellaswag_scores(eager, self.tokenizer, self.hellaswag, acc, cfg))
            except ValueError as error:  # e.g. examples longer than the context: the same on every process
                self.log(f"HellaSwag disabled for the rest of this run: {error}")
                self.hellaswag = None
        if self.chat:
            samples = [f"User: {r.prompt}\nAssistant: {r.text}" for r in replies[: cfg.eval.num_samples]]
        else:
            samples = sample_texts(eager, self.tokenizer, acc, cfg, step)
        self._record(record, step, samples)
        self.log(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
        for text in samples:
            self.log(f"  sample: {text!r}")
        self._write_plots()
        return record

    def _write_plots(self) -> None:
        if self.is_main:
            try:
                write_run_plots(self.out)
            except Exception as error:  # noqa: BLE001 - a plotting problem must never stop training
                self.log(f"plots: could not write plots ({type(error).__name__}: {error})")

    def checkpoint(self, step: int) -> None:
        path = save_checkpoint(self.accelerator, self.out, step, self.loader.state_dict(), self.config_yaml,
                               self.config.checkpoint.keep_last)
        if self.publisher is not None:
            if self.config.hub.push_checkpoints:
                self.publisher.push(path, f"checkpoints/{path.name}", f"Checkpoint at step {step}",
                                    allow_patterns=["model.safetensors", "config.yaml"])
            else:
                self.publisher.retry_failed()

    def save_final(self) -> Path:
        """`OUT/final/`: the save_pretrained folder (safetensors, config, modeling code, generation config),
        tokenizer and model card, written to a temporary folder and renamed."""
        final = self.out / "final"
        # Every process takes part in gathering the weights (needed when they are sharded, e.g. FSDP).
        state_dict = self.accelerator.get_state_dict(self.model)
        if self.is_main:
            tmp = self.out / ".tmp-final"
            shutil.rmtree(tmp, ignore_errors=True)
            model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
            if self.accelerator.distributed_type == DistributedType.FSDP:  # its own state dict: the head tied again
                model, state_dict = unsharded_model(model, state_dict), None
            model.save_pretrained(tmp, state_dict=state_dict)
            self.tokenizer.save_pretrained(tmp)
            evals = [r for r in read_jsonl(self.jsonl.metrics_path) if "val_loss" in r]
            card = render_model_card(
                self.config.to_dict(), n_params=count_params(self.config.model), steps=self.state.step,
                tokens=self.state.tokens, meta=self.meta, final_eval=evals[-1] if evals else {},
                precision=self.mixed_precision, repo_id=self.config.hub.repo_id,
            )
            write_text(tmp / "README.md", card)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            self.log(f"final model written to {final}")
            if self.publisher is not None:
                self.publisher.push(final, "", f"Final model after {self.state.step} steps")
        self.accelerator.wait_for_everyone()
        return final

    def fit(self) -> TrainResult:
        cfg, acc = self.config, self.accelerator
        max_steps = cfg.train.max_steps
        self.log(f"training {max_steps} steps: {self.accum} micro-step(s) of {cfg.train.micro_batch_size} x "
                 f"{cfg.model.seq_len} tokens on each of {acc.num_processes} process(es) "
                 f"({describe_wrapping(acc)}), precision {self.mixed_precision}, device {acc.device}")
        self.model.train()
        bar = tqdm(total=max_steps, initial=self.state.step, disable=not self.is_main, unit="step",
                   dynamic_ncols=True)
        stopped_by = None
        with StopRequest() as stop:
            while self.state.step < max_steps:
                record = self.train_step()
                step = self.state.step
                if step % cfg.logging.every == 0 or step == max_steps:
                    self._record(record, step)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:,.0f}")
                if step % cfg.eval.every == 0 or step == max_steps:
                    self.evaluate(step)
                stop_now = self._agree(stop.requested)
                if step % cfg.checkpoint.every == 0 or step == max_steps or stop_now:
                    self.checkpoint(step)
                if stop_now:
                    stopped_by = stop.signal_name or "a signal on another process"
                    self.log(f"stopped by {stopped_by} after step {step}; the checkpoint is written, "
                             f"run the same command again to continue")
                    break
        bar.close()
        final_dir = self.save_final() if self.state.step >= max_steps else None
        self._write_plots()
        if self.publisher is not None:
            self.publisher.close()
        acc.end_training()
        return TrainResult(self.out, self.state.step, self.state.tokens, stopped_by, final_dir)

    def _agree(self, requested: bool) -> bool:
        """A stop on any process stops every process at the same step."""
        if self.accelerator.num_processes == 1:
            return requested
        flag = torch.tensor(float(requested), device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "sum").item() > 0)


def train(config: RunConfig) -> TrainResult:
    """Train as configured, continuing from a checkpoint per `config.resume`.

    Writes `out_dir/config.yaml`, `metrics.jsonl`, `samples.jsonl`, `checkpoints/step_NNNNNNN/`, `plots/`
    and, once `train.max_steps` is reached, `final/`. Returns early (with `stopped_by` set) after a
    SIGTERM/SIGINT, once the checkpoint of the current step is written. Raises `ConfigError` for an
    inconsistent config and `NonFiniteLossError` when the loss diverges.
    """
    return Trainer(config).fit()
