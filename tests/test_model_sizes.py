"""GPT-2 medium, large and XL: the presets' shapes and llm.c recipes, parameter counts equal to transformers'
GPT-2, exact conversion at those widths, and activation checkpointing that changes nothing but memory."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import REPO_ROOT
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.initialization import no_init_weights

from nanogpt2.modeling import NanoGPT2LMHeadModel, convert_from_hf_gpt2
from nanogpt2.training import ModelConfig, count_params, load_config

GPT2_IDS = 50257
# preset -> (n_layer, n_head, n_embd), OpenAI's parameter count at 50,257 ids, and
# llm.c's run script values (lr, min_lr_ratio, warmup_steps, total_batch_tokens, max_steps).
SIZES = {
    "gpt2-350m": ((24, 16, 1024), 354_823_168, (3e-4, 0.0, 700, 524_288, 60_000)),
    "gpt2-774m": ((36, 20, 1280), 774_030_080, (2.5e-4, 0.0, 700, 524_288, 286_102)),
    "gpt2-1558m": ((48, 25, 1600), 1_557_611_200, (6e-4, 0.1, 700, 1_048_576, 32_000)),
}
# Conversion parity runs at each preset's width and heads with random weights; the depth is cut for large and
# XL because building them at full depth takes 3 and 6 GB per copy and about a minute on two CPU cores. Every
# block is converted by the same code, so depth adds repetition, not coverage (the counts above are full depth).
PARITY_DEPTH = {"gpt2-350m": 24, "gpt2-774m": 4, "gpt2-1558m": 2}


def preset_model(name: str) -> ModelConfig:
    return load_config(REPO_ROOT / "configs" / f"{name}.yaml").model


def hf_config(model: ModelConfig, vocab_size: int, n_layer: int | None = None) -> GPT2Config:
    return GPT2Config(vocab_size=vocab_size, n_positions=model.seq_len, n_embd=model.n_embd,
                      n_layer=n_layer or model.n_layer, n_head=model.n_head, activation_function="gelu_new",
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


@pytest.mark.parametrize("name", SIZES)
def test_presets_have_openai_shapes_and_llmc_recipes(name: str) -> None:
    config = load_config(REPO_ROOT / "configs" / f"{name}.yaml")
    shape, _, recipe = SIZES[name]
    m, t = config.model, config.train
    assert (m.n_layer, m.n_head, m.n_embd, m.seq_len, m.vocab_size, m.dropout) == (*shape, 1024, 50304, 0.0)
    assert (t.lr, t.min_lr_ratio, t.warmup_steps, t.total_batch_tokens, t.max_steps) == recipe
    assert (t.weight_decay, list(t.betas), t.grad_clip) == (0.1, [0.9, 0.95], 1.0)  # llm.c -c 0.1, AdamW, clip 1
    assert config.grad_accum_steps(8) >= 1  # the batch divides over one node of 8 GPUs


@pytest.mark.parametrize("name", SIZES)
def test_parameter_counts_equal_transformers_gpt2(name: str) -> None:
    model = preset_model(name)
    _, openai_params, _ = SIZES[name]
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        ours = NanoGPT2LMHeadModel(model.to_hf_config(GPT2_IDS, GPT2_IDS - 1))
        theirs = GPT2LMHeadModel(hf_config(model, model.vocab_size))
        unpadded = dataclasses.replace(model, vocab_size=GPT2_IDS)
        ours_unpadded = NanoGPT2LMHeadModel(unpadded.to_hf_config(GPT2_IDS, GPT2_IDS - 1))
        openai = GPT2LMHeadModel(hf_config(model, GPT2_IDS))
    assert ours.num_parameters() == theirs.num_parameters() == count_params(model)
    assert ours_unpadded.num_parameters() == openai.num_parameters() == openai_params


@pytest.mark.parametrize("name", SIZES)
def test_conversion_is_exact_at_each_width(name: str) -> None:
    model = preset_model(name)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(hf_config(model, GPT2_IDS, PARITY_DEPTH[name])).eval()
    with no_init_weights():  # the target's own random init would be overwritten; a weight left behind is garbage
        ours = convert_from_hf_gpt2(hf, pad_vocab_to_multiple_of=64).eval()  # 50,304 rows, as the presets
    assert ours.config.vocab_size == model.vocab_size and ours.config.n_head == model.n_head
    x = torch.randint(0, GPT2_IDS, (2, 8))  # short sequences: the cost is in the weights
    with torch.no_grad():
        ref, out = hf(x, labels=x), ours(x, labels=x)
    assert (out.logits[..., :GPT2_IDS] - ref.logits).abs().max().item() <= 1e-4
    assert out.logits[..., GPT2_IDS:].eq(float("-inf")).all()  # padding rows are never predicted
    assert abs(out.loss.item() - ref.loss.item()) <= 1e-5


def loss_and_grads(model: NanoGPT2LMHeadModel, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout masks for both runs
    loss = model(input_ids=x, shift_labels=x.roll(-1, dims=1)).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(dropout: float) -> None:
    # Exactly equal, not merely close: the backward recomputes each block with the same kernels on the same
    # inputs, torch.utils.checkpoint restores the RNG state so dropout draws the same masks, and the
    # gradients then flow through the same backward kernels in the same order.
    cfg = ModelConfig(n_layer=3, n_head=2, n_embd=32, seq_len=16, vocab_size=96, dropout=dropout)
    torch.manual_seed(0)
    model = NanoGPT2LMHeadModel(cfg.to_hf_config(tokenizer_vocab_size=90, eot_id=0)).train()
    x = torch.randint(0, 90, (4, cfg.seq_len))
    calls = []
    for block in model.transformer.h:  # transformers checkpoints the block's forward (not its hooks): count
        block.attn.register_forward_pre_hook(lambda *_: calls.append(1))  # its attention's runs instead
    loss, grads = loss_and_grads(model, x)
    assert len(calls) == cfg.n_layer
    model.activation_checkpointing_enable()  # what the Trainer does for train.gradient_checkpointing=true
    calls.clear()
    loss_ckpt, grads_ckpt = loss_and_grads(model, x)
    assert len(calls) == 2 * cfg.n_layer  # each block ran again in the backward: checkpointing was on
    assert torch.equal(loss, loss_ckpt)
    assert grads.keys() == grads_ckpt.keys()
    assert all(torch.equal(grads[name], grads_ckpt[name]) for name in grads)
