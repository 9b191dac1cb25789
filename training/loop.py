"""The pretraining loop: `train(config)` with Accelerate (device, precision, DDP, accumulation, trackers)."""

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
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from .checkpointing import (
    TrainingState,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temporaries,
    resolve_resume,
    save_checkpoint,
)
from .config import ConfigError, RunConfig
from .metrics_log import JsonlLog, read_jsonl
from .mfu import device_peak_flops, flops_per_token
from .model_card import render_model_card
from .optim import build_optimizer, build_scheduler
from .periodic_eval import hellaswag_scores, load_hellaswag_examples, sample_texts, validation_loss
from .signals import StopRequest


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


def load_tokenizer(config: RunConfig, meta: dict[str, Any]) -> Any:
    """The data's own tokenizer, or `data.tokenizer` after checking it is the one the data was made with."""
    from nanogpt2.data import load_data_tokenizer, tokenizer_fingerprint

    if config.data.tokenizer is None:
        return load_data_tokenizer(config.data.path)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.data.tokenizer)
    found, expected = tokenizer_fingerprint(tokenizer), meta.get("tokenizer_hash")
    if found != expected:
        raise ValueError(
            f"data.tokenizer={config.data.tokenizer} (hash {found}) is not the tokenizer the data in "
            f"{config.data.path} was prepared with (hash {expected}); unset data.tokenizer to use the data's own"
        )
    return tokenizer


def build_model(config: RunConfig, tokenizer: Any, eot_id: int) -> torch.nn.Module:
    from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel

    if config.model.vocab_size < len(tokenizer):
        raise ConfigError(f"model.vocab_size: {config.model.vocab_size} is smaller than the tokenizer's "
                          f"{len(tokenizer)} ids")
    m = config.model
    model_config = NanoGPT2Config(
        vocab_size=m.vocab_size, n_positions=m.seq_len, n_embd=m.n_embd, n_layer=m.n_layer, n_head=m.n_head,
        embd_pdrop=m.dropout, attn_pdrop=m.dropout, resid_pdrop=m.dropout,
        tokenizer_vocab_size=len(tokenizer), bos_token_id=eot_id, eos_token_id=eot_id,
    )
    model = NanoGPT2LMHeadModel(model_config)
    model.generation_config.pad_token_id = eot_id
    return model


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_plots(out_dir: Path, log: Any) -> None:
    try:
        from nanogpt2.training.plots import write_run_plots
    except ImportError:
        return
    try:
        write_run_plots(out_dir)
    except Exception as e:  # noqa: BLE001 - a plotting problem must never stop training
        log(f"plots: could not write plots ({type(e).__name__}: {e})")


class _Run:
    """State shared by the phases of one run (setup, steps, evaluation, checkpoint, final save)."""

    def __init__(self, config: RunConfig) -> None:
        from nanogpt2.data import TokenLoader, load_meta

        if not config.data.path:
            raise ConfigError("data.path: required (a folder written by nanogpt2.data.prepare_data)")
        self.config = config
        self.out = Path(config.out_dir)
        # cpu=True on a machine without an accelerator is what makes torchrun / multi-process launches
        # use gloo DDP (MULTI_CPU) instead of silently running each process alone.
        on_cpu = not torch.accelerator.is_available()
        world_size = PartialState(cpu=on_cpu).num_processes
        self.accum = config.grad_accum_steps(world_size)
        self.mixed_precision = resolve_mixed_precision(config.train.mixed_precision)
        self.accelerator = Accelerator(
            cpu=on_cpu,
            mixed_precision=self.mixed_precision,
            gradient_accumulation_steps=self.accum,
            log_with="wandb" if config.logging.tracker == "wandb" else None,
            project_dir=str(self.out),
            # The schedule is defined per optimizer step, not per process: step it once per step.
            step_scheduler_with_optimizer=False,
            dynamo_backend="inductor" if config.train.compile else "no",
        )
        acc = self.accelerator
        self.is_main = acc.is_main_process
        if acc.device.type == "cuda" and config.train.tf32:
            torch.set_float32_matmul_precision("high")  # TF32 for the fp32 matmuls left outside autocast
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out)
        acc.wait_for_everyone()

        self.meta = load_meta(config.data.path)
        self.tokenizer = load_tokenizer(config, self.meta)
        eot_id = int(self.meta.get("eot_id", self.tokenizer.eos_token_id))
        set_seed(config.seed)
        model = build_model(config, self.tokenizer, eot_id).to(acc.device)
        optimizer = build_optimizer(model, config.train, acc.device)
        scheduler = build_scheduler(optimizer, config.train)
        self.model, self.optimizer, self.scheduler = acc.prepare(model, optimizer, scheduler)
        self.state = TrainingState()
        acc.register_for_checkpointing(self.state)

        self.loader = TokenLoader(
            config.data.path, "train", batch_size=config.train.micro_batch_size, seq_len=config.model.seq_len,
            rank=acc.process_index, world_size=acc.num_processes, seed=config.seed,
            shuffle=config.data.shuffle, tokenizer=self.tokenizer,
        )
        self.resumed_from = resolve_resume(config.resume, self.out)
        if self.resumed_from is not None:
            self.loader.load_state_dict(load_checkpoint(acc, self.resumed_from))
            self.log(f"resumed from {self.resumed_from} (step {self.state.step}, {self.state.tokens:,} tokens)")
        elif config.logging.tracker == "wandb":
            self.state.tracker_run_id = uuid.uuid4().hex[:8]  # chosen here so checkpoints can carry it
        self._drop_later_checkpoints()
        self.batches = iter(self.loader)

        self.config_yaml = config.to_yaml()
        self.metrics = JsonlLog(self.out / "metrics.jsonl")
        self.samples_log = JsonlLog(self.out / "samples.jsonl")
        if self.is_main:
            _write_atomic(self.out / "config.yaml", self.config_yaml)
            # Steps after the checkpoint will be trained and logged again: drop their old records.
            self.metrics.truncate_after(self.state.step)
            self.samples_log.truncate_after(self.state.step)
        if config.logging.tracker == "wandb":
            acc.init_trackers(
                config.logging.project, config=config.to_dict(),
                init_kwargs={"wandb": {"name": config.logging.run_name or self.out.name,
                                       "id": self.state.tracker_run_id, "resume": "allow",
                                       "dir": str(self.out)}},
            )
        self.hellaswag = load_hellaswag_examples(config, self.log)
        self.flops_per_token = flops_per_token(config.model)
        self.peak_flops = device_peak_flops(acc.device, self.mixed_precision)
        self.pusher = None
        if config.hub.push and self.is_main:
            from .hub import HubPusher

            self.pusher = HubPusher(config.hub.repo_id or "", private=config.hub.private, log=self.log)

    def _drop_later_checkpoints(self) -> None:
        """Checkpoints in out_dir past the starting step belong to an abandoned trajectory.

        resume=PATH to an earlier checkpoint (a rollback) deletes them, as metrics.jsonl drops their
        records; resume=none refuses to start over in a folder that holds checkpoints.
        """
        later = [p for p in list_checkpoints(self.out) if checkpoint_step(p) > self.state.step]
        if not later:
            return
        if self.config.resume == "none":
            raise ConfigError(f"resume: 'none' would start over in {self.out}, which holds checkpoints "
                              f"({later[-1].name}, ...); use a new out_dir, or resume=auto to continue")
        self.accelerator.wait_for_everyone()
        if self.is_main:
            self.log(f"deleting {len(later)} checkpoint(s) after step {self.state.step}: {[p.name for p in later]}")
            for path in later:
                shutil.rmtree(path)
        self.accelerator.wait_for_everyone()

    def log(self, message: str) -> None:
        if self.is_main:
            tqdm.write(message)

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `accum` micro-batches; returns the step's metrics."""
        acc, cfg = self.accelerator, self.config
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=acc.device)
        for _ in range(self.accum):
            x, y = next(self.batches)  # (B, T) int64 each; y is x shifted left by one
            x, y = x.to(acc.device, non_blocking=True), y.to(acc.device, non_blocking=True)
            # accumulate() skips the DDP all-reduce except on the last micro-step; backward() divides the
            # loss by `accum`, so the summed gradients are those of the mean loss over all micro-batches.
            with acc.accumulate(self.model):
                loss = self.model(input_ids=x, shift_labels=y).loss
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
                f"Newest complete checkpoint: {(list_checkpoints(self.out) or ['none'])[-1]}"
            )
        lr = self.scheduler.get_last_lr()[0]  # the LR this update uses
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step = step
        self.state.tokens += cfg.train.total_batch_tokens
        dt = time.perf_counter() - t0
        tokens_per_s = cfg.train.total_batch_tokens / dt
        record = {"step": step, "tokens": self.state.tokens, "loss": loss_value, "lr": lr,
                  "grad_norm": grad_norm, "tokens_per_s": tokens_per_s, "step_time_s": dt}
        if self.peak_flops is not None:
            record["mfu"] = self.flops_per_token * tokens_per_s / (self.peak_flops * acc.num_processes)
        return record

    def evaluate(self, step: int) -> dict[str, Any]:
        acc, cfg = self.accelerator, self.config
        record: dict[str, Any] = {"step": step, "tokens": self.state.tokens}
        record["val_loss"] = validation_loss(self.model, acc, cfg, self.tokenizer)
        eager = acc.unwrap_model(self.model, keep_torch_compile=False)
        if self.hellaswag:
            try:
                record.update(hellaswag_scores(eager, self.tokenizer, self.hellaswag, acc, cfg))
            except ValueError as e:  # e.g. examples longer than the context: the same on every process
                self.log(f"HellaSwag disabled for the rest of this run: {e}")
                self.hellaswag = None
        samples = sample_texts(eager, self.tokenizer, acc, cfg, step)
        if self.is_main:
            self.metrics.write(record)
            for text in samples:
                self.samples_log.write({"step": step, "text": text})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float))
            self.log(f"step {step}: {shown}")
            for text in samples:
                self.log(f"  sample: {text!r}")
        acc.log({f"eval/{k}": v for k, v in record.items() if k != "step"}, step=step)
        if samples and self.config.logging.tracker == "wandb" and self.is_main:
            acc.get_tracker("wandb").log_table(
                "eval/samples", columns=["step", "text"], data=[[step, t] for t in samples], step=step
            )
        if self.is_main:
            _write_plots(self.out, self.log)
        return record

    def checkpoint(self, step: int) -> None:
        path = save_checkpoint(self.accelerator, self.out, step, self.loader.state_dict(), self.config_yaml,
                               self.config.checkpoint.keep_last)
        if self.pusher is not None:
            if self.config.hub.push_checkpoints:
                self.pusher.push(path, f"checkpoints/{path.name}", f"Checkpoint at step {step}",
                                 allow_patterns=["model.safetensors", "config.yaml"])
            else:
                self.pusher.retry_failed()

    def save_final(self) -> Path:
        """`OUT/final/`: save_pretrained folder (safetensors, config, modeling code, generation config),
        tokenizer and model card, written to a temporary folder and renamed."""
        final = self.out / "final"
        # Every process takes part in gathering the weights (needed when they are sharded, e.g. FSDP).
        state_dict = self.accelerator.get_state_dict(self.model)
        if self.is_main:
            tmp = self.out / ".tmp-final"
            shutil.rmtree(tmp, ignore_errors=True)
            model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
            model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            evals = [r for r in read_jsonl(self.metrics.path) if "val_loss" in r]
            card = render_model_card(self.config, steps=self.state.step, tokens=self.state.tokens,
                                     meta=self.meta, final_eval=evals[-1] if evals else {},
                                     precision=self.mixed_precision, repo_id=self.config.hub.repo_id)
            (tmp / "README.md").write_text(card)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            self.log(f"final model written to {final}")
            if self.pusher is not None:
                self.pusher.push(final, "", f"Final model after {self.state.step} steps")
        self.accelerator.wait_for_everyone()
        return final

    def run(self) -> TrainResult:
        cfg, acc = self.config, self.accelerator
        max_steps = cfg.train.max_steps
        self.log(f"training {max_steps} steps: {self.accum} micro-step(s) of {cfg.train.micro_batch_size} x "
                 f"{cfg.model.seq_len} tokens on each of {acc.num_processes} process(es), "
                 f"precision {self.mixed_precision}, device {acc.device}")
        self.model.train()
        bar = tqdm(total=max_steps, initial=self.state.step, disable=not self.is_main, unit="step",
                   dynamic_ncols=True)
        stopped_by = None
        with StopRequest() as stop:
            while self.state.step < max_steps:
                record = self.train_step()
                step = record["step"]
                if self.is_main and (step % cfg.logging.every == 0 or step == max_steps):
                    self.metrics.write(record)
                if step % cfg.logging.every == 0 or step == max_steps:
                    acc.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
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
        if self.is_main:
            _write_plots(self.out, self.log)
            if self.pusher is not None:
                self.pusher.close()
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
    return _Run(config).run()
