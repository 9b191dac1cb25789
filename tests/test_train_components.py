"""Pieces of the loop on their own: LR schedule, AdamW groups, FLOPs/MFU, the JSON-lines tracker, signals."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel
from nanogpt2.training import (
    build_optimizer,
    build_scheduler,
    count_params,
    device_peak_flops,
    flops_per_token,
    gpu_peak_flops,
    load_config,
)
from nanogpt2.training.signals import StopRequest
from nanogpt2.training.tracking import JsonlTracker
from nanogpt2.utils import read_jsonl


def test_lr_schedule_warmup_peak_cosine_to_ten_percent() -> None:
    cfg = load_config().train  # 6e-4 peak, 715 warmup, 19,073 steps, min 10%
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2, 2))], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg)
    for _ in range(3):  # the scheduler itself, stepped: the LR of step s is lr * lambda(s)
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(6e-4 * 3 / 715)
    lrs = [cfg.lr * scheduler.lr_lambdas[0](step) for step in range(cfg.max_steps + 1)]
    assert lrs[0] == 0.0
    assert lrs[357] == pytest.approx(6e-4 * 357 / 715)
    assert lrs[715] == pytest.approx(6e-4)
    midpoint = 715 + (19_073 - 715) // 2
    assert lrs[midpoint] == pytest.approx(6e-4 * (0.1 + 0.9 * 0.5), rel=1e-3)
    assert lrs[19_073] == pytest.approx(6e-5)
    assert all(a >= b for a, b in zip(lrs[715:], lrs[716:], strict=False))


def test_weight_decay_only_on_matrices_and_embeddings() -> None:
    model = NanoGPT2LMHeadModel(NanoGPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    optimizer = build_optimizer(model, load_config().train, torch.device("cpu"))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert any("wte" in n for n in decayed) and any("wpe" in n for n in decayed)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == model.num_parameters()
    assert optimizer.defaults["betas"] == (0.9, 0.95) and optimizer.defaults["eps"] == 1e-8


def test_parameter_count_and_flops_per_token_of_gpt2_small() -> None:
    cfg = load_config().model
    with torch.device("meta"):
        model = NanoGPT2LMHeadModel(NanoGPT2Config(vocab_size=50304, n_positions=1024))
    assert count_params(cfg) == model.num_parameters() == 124_475_904
    n_matmul = 124_475_904 - 1024 * 768
    assert flops_per_token(cfg) == 6 * n_matmul + 12 * 12 * 768 * 1024
    assert device_peak_flops(torch.device("cpu"), "bf16") is None  # unknown peak: MFU is omitted


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA L4", 121e12), ("NVIDIA L40S", 362e12), ("NVIDIA L40", 181e12), ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA GeForce RTX 4090", 165e12),
    ("NVIDIA GeForce RTX 3060", None),
])
def test_gpu_peak_is_matched_by_whole_name(name: str, peak: float | None) -> None:
    assert gpu_peak_flops(name) == peak  # "L4" must not match inside "L40S", "H100" not take "H100 PCIe"


def test_jsonl_tracker_appends_records_and_drops_later_steps_on_restart(tmp_path: Path) -> None:
    tracker = JsonlTracker(tmp_path, resume_step=0)
    for step in (1, 2, 3):
        tracker.log({"loss": float(step)}, step=step)
    tracker.log({"val_loss": float("nan")}, step=2)  # JSON has no NaN: written as null
    tracker.log_table("samples", columns=["text"], data=[["a"], ["b"]], step=3)
    with tracker.metrics_path.open("a") as f:
        f.write('{"step": 4, "lo')  # a kill mid-write
    restarted = JsonlTracker(tmp_path, resume_step=2)
    restarted.start()  # what accelerator.init_trackers calls on the main process
    assert read_jsonl(tracker.metrics_path) == [
        {"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}, {"step": 2, "val_loss": None}]
    assert read_jsonl(tracker.samples_path) == []  # the step-3 samples will be generated again
    restarted.log_table("samples", columns=["text"], data=[["c"]], step=4)
    assert read_jsonl(tracker.samples_path) == [{"step": 4, "text": "c"}]


def test_stop_request_records_sigterm_instead_of_dying() -> None:
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is not stop._handle
