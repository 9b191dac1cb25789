"""`train.optimizer=muon`: the parameter split, learning, exact resume, and DDP equal to one process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from _train_helpers import pretrain_on_two_processes, tiny_cli_args, tiny_config, train_in_process, training_losses

from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel
from nanogpt2.training import build_optimizer, build_scheduler
from nanogpt2.training.config import ConfigError, TrainConfig
from nanogpt2.training.optim import MuonWithAdamW

MUON = ("train.optimizer=muon", "train.muon_lr=0.02")


def tiny_model(n_layer: int = 2) -> NanoGPT2LMHeadModel:
    torch.manual_seed(0)
    config = NanoGPT2Config(vocab_size=320, n_positions=32, n_embd=32, n_layer=n_layer, n_head=2,
                            tokenizer_vocab_size=300, bos_token_id=0, eos_token_id=0)
    return NanoGPT2LMHeadModel(config)


def names_of(model: torch.nn.Module, params: list[torch.Tensor]) -> list[str]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    return sorted(by_id[id(p)] for p in params)


def test_muon_gets_exactly_the_hidden_matrices_and_adamw_the_rest_once() -> None:
    model = tiny_model()
    optimizer = build_optimizer(model, TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.05), torch.device("cpu"))
    assert isinstance(optimizer, MuonWithAdamW)
    muon = [p for g in optimizer.muon.param_groups for p in g["params"]]
    adamw = [p for g in optimizer.adamw.param_groups for p in g["params"]]
    matrices = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    assert names_of(model, muon) == sorted(f"transformer.h.{i}.{m}.weight" for i in range(2) for m in matrices)
    adamw_names = names_of(model, adamw)
    assert adamw_names.count("transformer.wte.weight") == 1  # the tied output layer is this same tensor
    assert model.lm_head.weight is model.transformer.wte.weight
    assert "transformer.wpe.weight" in adamw_names and "transformer.ln_f.bias" in adamw_names
    assert len(muon) + len(adamw) == len(list(model.parameters()))  # every parameter, exactly once
    # One object for the schedule: AdamW's groups first (the logged lr), each group scaled from its own peak.
    assert optimizer.param_groups[0] is optimizer.adamw.param_groups[0]
    scheduler = build_scheduler(optimizer, TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.05, warmup_steps=2,
                                                       max_steps=10))
    optimizer.step()
    scheduler.step()
    assert [g["lr"] for g in optimizer.adamw.param_groups] == pytest.approx([5e-4, 5e-4])
    assert optimizer.muon.param_groups[0]["lr"] == pytest.approx(0.025)
    assert scheduler.get_last_lr()[0] == pytest.approx(5e-4)


def test_adamw_stays_the_default_and_bad_values_name_the_key() -> None:
    assert isinstance(build_optimizer(tiny_model(1), TrainConfig(), torch.device("cpu")), torch.optim.AdamW)
    with pytest.raises(ConfigError, match="train.optimizer: must be one of adamw, muon"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="train.muon_momentum"):
        TrainConfig(muon_momentum=1.0)


def test_a_few_muon_steps_reduce_the_loss_and_fill_both_states() -> None:
    model = tiny_model()
    optimizer = build_optimizer(model, TrainConfig(optimizer="muon", lr=3e-3, muon_lr=0.02), torch.device("cpu"))
    torch.manual_seed(1)
    x = torch.randint(0, 300, (4, 32))  # (B, T): one fixed batch to fit
    losses = []
    for _ in range(10):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0
    state = optimizer.state_dict()["state"]  # torch's layout: one entry per parameter, both optimizers' kinds
    assert len(state) == len(list(model.parameters()))
    assert sum("momentum_buffer" in s for s in state.values()) == 8  # the blocks' 2-D matrices
    assert sum("exp_avg" in s for s in state.values()) == len(state) - 8


@pytest.fixture(scope="module")
def muon_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("muon") / "run"
    result = train_in_process(tiny_config(tiny_data, out, *MUON, "eval.num_samples=0"))
    assert result.step == 8
    return out


def test_muon_resume_continues_bitwise_identically(muon_run: Path, tmp_path: Path, tiny_data: Path) -> None:
    losses = training_losses(muon_run)
    assert sorted(losses) == list(range(1, 9)) and losses[8] < losses[1] - 0.3
    out = tmp_path / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(muon_run / "checkpoints" / "step_0000004", out / "checkpoints" / "step_0000004")
    shutil.copy(muon_run / "metrics.jsonl", out / "metrics.jsonl")
    result = train_in_process(tiny_config(tiny_data, out, *MUON, "eval.num_samples=0"))
    assert result.step == 8
    assert training_losses(out) == losses


def test_muon_under_two_ddp_processes_matches_one_process(muon_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    assert "(MULTI_CPU)" in pretrain_on_two_processes(tiny_cli_args(tiny_data, out, *MUON, "eval.num_samples=0"))
    one, two = training_losses(muon_run), training_losses(out)
    assert sorted(two) == list(range(1, 9))
    for step in one:
        assert two[step] == pytest.approx(one[step], abs=1e-4), f"step {step}"
