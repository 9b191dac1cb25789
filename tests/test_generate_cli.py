"""`nanogpt2 generate` on tiny saved models: a nanogpt2 folder and a plain transformers GPT-2 folder."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from transformers import GPT2Config, GPT2LMHeadModel, set_seed

from nanogpt2.cli import build_parser, main
from nanogpt2.cli.generate import generation_kwargs, sample
from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel
from nanogpt2.utils.models import load_model_and_tokenizer

PROMPT = "the cat reads"


@pytest.fixture(scope="module")
def nanogpt2_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    out = tmp_path_factory.mktemp("nanogpt2")
    torch.manual_seed(0)
    eot = tiny_tokenizer.eos_token_id
    config = NanoGPT2Config(vocab_size=320, tokenizer_vocab_size=len(tiny_tokenizer), n_positions=32, n_embd=32,
                            n_layer=2, n_head=2, bos_token_id=eot, eos_token_id=eot)
    NanoGPT2LMHeadModel(config).save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    out = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    eot = tiny_tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tiny_tokenizer), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=eot, eos_token_id=eot)
    GPT2LMHeadModel(config).save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


def parse(*argv: str) -> argparse.Namespace:
    return build_parser("generate").parse_args(["generate", "--model", "m", "--prompt", PROMPT, *argv])


def samples(model_dir: Path, *argv: str) -> list[str]:
    """The texts `nanogpt2 generate` would print, seeded as the verb seeds them."""
    args = parse(*argv)
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    set_seed(args.seed)
    return sample(model, tokenizer, PROMPT, **generation_kwargs(args, tokenizer))


def test_script_samples_from_a_nanogpt2_folder(nanogpt2_dir: Path) -> None:
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "generate.py"), "--model", str(nanogpt2_dir),
           "--prompt", PROMPT, "--max-new-tokens", "6", "--num-samples", "3", "--seed", "7", "--top-k", "20",
           "--top-p", "0.9"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "NanoGPT2LMHeadModel" in done.stdout
    texts = [part.split("---\n", 1)[1].rstrip("\n") for part in done.stdout.split("\n--- sample ")[1:]]
    assert len(texts) == 3 and all(t.startswith(PROMPT) for t in texts)


@pytest.mark.parametrize("model_fixture", ["nanogpt2_dir", "gpt2_dir"])
def test_seeded_sampling_is_reproducible(model_fixture: str, request) -> None:
    model_dir = request.getfixturevalue(model_fixture)
    argv = ["--max-new-tokens", "8", "--num-samples", "2", "--temperature", "1.5", "--top-k", "0", "--seed"]
    first = samples(model_dir, *argv, "3")
    assert samples(model_dir, *argv, "3") == first and len(first) == 2
    assert samples(model_dir, *argv, "4") != first


def test_greedy_matches_model_argmax(gpt2_dir: Path, tiny_tokenizer) -> None:
    (text,) = samples(gpt2_dir, "--max-new-tokens", "5", "--temperature", "0", "--seed", "0")
    # Reference: argmax decoding by hand with the same weights.
    model = GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    ids = tiny_tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for _ in range(5):
            next_id = model(ids).logits[0, -1].argmax()
            if next_id.item() == tiny_tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    assert text == tiny_tokenizer.decode(ids[0], skip_special_tokens=True)


def test_generation_kwargs_mapping(tiny_tokenizer) -> None:
    args = parse("--max-new-tokens", "9", "--temperature", "0.7", "--top-k", "5", "--top-p", "0.8",
                 "--num-samples", "4")
    assert generation_kwargs(args, tiny_tokenizer) == {
        "max_new_tokens": 9, "num_return_sequences": 4, "pad_token_id": tiny_tokenizer.eos_token_id,
        "do_sample": True, "temperature": 0.7, "top_k": 5, "top_p": 0.8}
    greedy = generation_kwargs(parse("--temperature", "0", "--num-samples", "2"), tiny_tokenizer)
    assert greedy["do_sample"] is False and greedy["num_beams"] == 2


@pytest.mark.parametrize(("extra", "flag"), [(["--top-p", "0"], "--top-p"), (["--temperature", "-1"], "--temperature"),
                                             (["--num-samples", "0"], "--num-samples"),
                                             (["--max-new-tokens", "0"], "--max-new-tokens")])
def test_bad_options_are_rejected_before_loading(extra: list[str], flag: str, capsys) -> None:
    # The model id does not exist: the flag is what gets reported, before any loading.
    assert main(["generate", "--model", "no-such-user/no-such-model", "--prompt", PROMPT, *extra]) == 2
    err = capsys.readouterr().err
    assert flag in err and "no-such-model" not in err and "Traceback" not in err


def test_clear_errors_for_context_and_missing_model(nanogpt2_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["generate", "--model", str(nanogpt2_dir), "--prompt", PROMPT, "--max-new-tokens", "100"]) == 2
    err = capsys.readouterr().err
    assert "--max-new-tokens" in err and "32" in err and "Traceback" not in err  # names the flag and the context
    for missing in (str(tmp_path / "missing"), "no-such-user/no-such-model"):
        assert main(["generate", "--model", missing, "--prompt", PROMPT]) == 2
        err = capsys.readouterr().err
        assert missing in err and "Traceback" not in err
