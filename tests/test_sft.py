"""Supervised fine-tuning: the pretraining loop on conversations, from pretrained weights (`init_from`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _train_helpers import tiny_cli_args, tiny_config, train_in_process, training_losses
from conftest import reset_accelerate

from nanogpt2.cli import main as nanogpt2
from nanogpt2.utils import read_jsonl

SFT_OVERRIDES = ("train.max_steps=6", "train.lr=3e-3", "eval.every=3", "checkpoint.every=3",
                 "checkpoint.keep_last=2", "eval.max_new_tokens=12", "eval.num_samples=2",
                 "eval.chat_prompts=[What sees the cat?, What likes a dog?, What reads my friend?]")


@pytest.fixture(scope="module")
def sft_run(reference_run: Path, tiny_chat_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 SFT steps of the tiny pretrained model through `nanogpt2 sft`, checkpoints at 3 and 6."""
    out = tmp_path_factory.mktemp("sft") / "run"
    reset_accelerate()
    code = nanogpt2(["sft", *tiny_cli_args(tiny_chat_data, out, f"init_from={reference_run / 'final'}",
                                           *SFT_OVERRIDES)])
    reset_accelerate()
    assert code == 0
    return out


def test_sft_logs_end_of_turn_rate_and_conversations(sft_run: Path) -> None:
    evals = [r for r in read_jsonl(sft_run / "metrics.jsonl") if "val_loss" in r]
    assert [r["step"] for r in evals] == [3, 6]
    assert all(0.0 <= r["eot_rate"] <= 1.0 and r["val_loss"] > 0 for r in evals)
    samples = read_jsonl(sft_run / "samples.jsonl")
    assert [s["step"] for s in samples] == [3, 3, 6, 6]
    assert all(s["text"].startswith("User: What ") and "\nAssistant: " in s["text"] for s in samples)
    # The final folder chats: its tokenizer has the template, its generation stops at the end of a turn.
    final = sft_run / "final"
    assert (final / "chat_template.jinja").is_file()
    from transformers import GenerationConfig

    eos = GenerationConfig.from_pretrained(final).eos_token_id
    assert isinstance(eos, list) and len(eos) == 2


def test_sft_resumes_bitwise_exactly(sft_run: Path, tiny_chat_data: Path, reference_run: Path,
                                     tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    shutil.copytree(sft_run / "checkpoints" / "step_0000003", out / "checkpoints" / "step_0000003")
    shutil.copy(sft_run / "metrics.jsonl", out / "metrics.jsonl")
    result = train_in_process(tiny_config(tiny_chat_data, out, f"init_from={reference_run / 'final'}",
                                          *SFT_OVERRIDES))
    assert result.step == 6
    assert training_losses(out) == training_losses(sft_run)


def test_sft_loss_is_on_the_assistants_tokens_only(sft_run: Path, reference_run: Path, tiny_chat_data: Path,
                                                   tmp_path: Path) -> None:
    """The first step's loss is the pretrained model's mean loss over the assistant targets of its batches."""
    import itertools

    import torch
    from transformers import AutoModelForCausalLM

    from nanogpt2.data import IGNORE_INDEX, TokenLoader

    model = AutoModelForCausalLM.from_pretrained(reference_run / "final", trust_remote_code=True)
    model.config.tokenizer_vocab_size = 304  # the chat markers, as the loop makes them predictable
    batches = list(itertools.islice(TokenLoader(tiny_chat_data, "train", batch_size=4, seq_len=32), 2))
    with torch.no_grad():
        total = sum(model(input_ids=x, shift_labels=y, num_items_in_batch=1).loss for x, y in batches)
    scored = sum(int((y != IGNORE_INDEX).sum()) for _, y in batches)
    assert 0 < scored < 2 * 4 * 32  # the user's words are not scored
    assert training_losses(sft_run)[1] == pytest.approx(float(total) / scored, abs=1e-5)
