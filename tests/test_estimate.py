"""`nanogpt2 estimate`: the activation formula against the tensors autograd really saves, the presets'
numbers, GPU names and a user's mistakes."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO_ROOT

from nanogpt2 import cli
from nanogpt2.modeling import NanoGPT2LMHeadModel
from nanogpt2.training import ModelConfig, count_params, flops_per_token, load_config
from nanogpt2.training.estimate import (
    block_bytes_per_token,
    estimate_run,
    resolve_gpu,
    saved_activation_bytes,
)

GIB = 2**30


def run_estimate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(["estimate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def saved_tensor_bytes(model: torch.nn.Module, batch: int, seq_len: int) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves in one training forward (ids and loss
    as the Trainer calls the model)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()  # q, k and v are views of one c_attn output: counted once
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    x, y = torch.randint(0, 90, (2, batch, seq_len))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=x, shift_labels=y, num_items_in_batch=batch * seq_len)
    return sum(saved.values())


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_enable` is deprecated:FutureWarning")
@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("shape", [dict(n_layer=2, n_head=2, n_embd=32, seq_len=16),
                                   dict(n_layer=3, n_head=4, n_embd=48, seq_len=8)])
def test_activation_formula_counts_every_saved_byte_in_fp32(shape: dict[str, int], checkpointing: bool) -> None:
    # In fp32 every tensor is 4 bytes, so compute_bytes=4 must match autograd's saved tensors exactly; in bf16
    # the same tensors are counted with 2 bytes for those autocast computes in. Vocabulary padding (96 rows, 90
    # ids) exercises the masked logits, as in real runs.
    cfg = ModelConfig(vocab_size=96, **shape)
    torch.manual_seed(0)
    model = NanoGPT2LMHeadModel(cfg.to_hf_config(tokenizer_vocab_size=90, eot_id=0)).train()
    if checkpointing:
        model.gradient_checkpointing_enable()  # as the Trainer does for train.gradient_checkpointing
    measured = saved_tensor_bytes(model, batch=3, seq_len=cfg.seq_len)
    assert measured == saved_activation_bytes(cfg, 3, compute_bytes=4, gradient_checkpointing=checkpointing)


def test_bf16_block_keeps_36d_plus_4h_bytes_per_token() -> None:
    cfg = ModelConfig(n_layer=48, n_head=25, n_embd=1600)
    assert block_bytes_per_token(cfg, 2) == 36 * 1600 + 4 * 25 + 16


def test_gpt2_124m_ten_billion_token_run(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_estimate(capsys, "--config", str(REPO_ROOT / "configs/gpt2-124m.yaml"), "--json",
                                  "--gpu", "H100", "--mfu", "0.5", "--num-gpus", "8")
    e = json.loads(out)
    assert status == 0 and e["params"] == 124_475_904
    assert e["flops_per_token"] == flops_per_token(load_config().model) == 6 * (124_475_904 - 1024 * 768) + \
        12 * 12 * 768 * 1024
    assert e["tokens_per_step"] == 524_288 and e["steps"] == 19_073 and e["grad_accum_steps"] == 1
    assert e["total_tokens"] == 9_999_745_024
    assert e["total_flops"] == pytest.approx(855_383_040 * 9_999_745_024, rel=1e-12)  # 8.55e18
    assert e["seconds"] == pytest.approx(e["total_flops"] / (8 * 989e12 * 0.5), rel=1e-12)
    # The preset's claim: micro-batch 64 x 1024 fits an 80 GB GPU.
    assert e["peak_bytes_ddp"] < 79 * GIB and e["state_bytes_ddp"] == 16 * 124_475_904


@pytest.mark.parametrize("preset,gpus,peak_key", [("gpt2-350m", 8, "peak_bytes_ddp"),
                                                  ("gpt2-774m", 8, "peak_bytes_ddp"),
                                                  ("gpt2-1558m", 8, "peak_bytes_fsdp")])
def test_presets_fit_80gb_gpus_as_their_headers_say(preset: str, gpus: int, peak_key: str) -> None:
    config = load_config(REPO_ROOT / "configs" / f"{preset}.yaml")
    e = estimate_run(config, "H100", 0.4, gpus).to_dict()
    assert e["params"] == count_params(config.model)
    assert 30 * GIB < e[peak_key] < 75 * GIB  # room for the CUDA context and workspaces
    assert e["steps"] * e["tokens_per_step"] == e["total_tokens"]


def test_1558m_needs_fsdp_at_llmc_micro_batch() -> None:
    e = estimate_run(load_config(REPO_ROOT / "configs/gpt2-1558m.yaml"), "H100", 0.4, 8)
    assert e.state_bytes_fsdp * 8 >= e.state_bytes_ddp and e.peak_bytes_ddp > 75 * GIB > e.peak_bytes_fsdp
    assert e.grad_accum_steps == 8 and e.params == 1_557_686_400


def test_gradient_checkpointing_shrinks_saved_activations() -> None:
    plain = estimate_run(load_config(REPO_ROOT / "configs/gpt2-774m.yaml"), "A100")
    checkpointed = estimate_run(load_config(REPO_ROOT / "configs/gpt2-774m.yaml",
                                            ["train.gradient_checkpointing=true"]), "A100")
    assert checkpointed.activation_bytes < plain.activation_bytes / 3
    assert checkpointed.transient_bytes > plain.transient_bytes  # one block recomputed at a time


@pytest.mark.parametrize("name,resolved,peak", [
    ("H100", "H100", 989e12), ("h100 pcie", "H100 PCIe", 756e12), ("4090", "RTX 4090", 165e12),
    ("L4", "L4", 121e12), ("l40s", "L40S", 362e12), ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB", 312e12),
])
def test_gpu_names_resolve_to_the_mfu_table(name: str, resolved: str, peak: float) -> None:
    assert resolve_gpu(name) == (resolved, peak)


def test_unknown_gpu_is_one_line_listing_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_estimate(capsys, "--gpu", "V100")
    assert status == 2 and out == ""
    assert err.startswith("error: --gpu 'V100'") and "H100" in err and "RTX 4090" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,named", [
    (["model.n_layers=3"], "model.n_layers"),
    (["--num-gpus", "3"], "train.total_batch_tokens"),  # 524,288 tokens do not split over 3 GPUs
    (["--config", "configs/no-such-preset.yaml"], "no-such-preset.yaml"),
    (["--mfu", "1.5"], "--mfu"),
])
def test_config_and_flag_errors_exit_2_naming_the_key(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                      named: str) -> None:
    status, _, err = run_estimate(capsys, *argv)
    assert status == 2 and err.startswith("error: ") and named in err


def test_epochs_leave_the_steps_to_the_data(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_estimate(capsys, "train.epochs=2", "--json")
    e = json.loads(out)
    assert status == 0 and e["steps"] is None and e["seconds"] is None and e["tokens_per_second"] > 0


def test_text_output_lists_the_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_estimate(capsys, "--config", str(REPO_ROOT / "configs/gpt2-350m.yaml"), "--gpu", "A100")
    rows = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith(" "))
    assert status == 0 and rows["parameters"].startswith("354,871,296")
    assert set(rows) >= {"parameters", "FLOPs", "batch", "steps", "memory", "time"}
