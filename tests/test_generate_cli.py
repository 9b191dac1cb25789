"""scripts/generate.py on tiny saved models: a nanogpt2 folder and a plain transformers GPT-2 folder."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from nanogpt2.data.train_tokenizer import train_byte_level_bpe
from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "generate.py"
PROMPT = "the model reads"


def load_script():
    spec = importlib.util.spec_from_file_location("generate_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load_script()


@pytest.fixture(scope="module")
def tokenizer():
    words = ["the", "model", "reads", "text", "and", "predicts", "next", "token", "in", "python"]
    texts = [" ".join(words[(i * 3 + j) % len(words)] for j in range(30)) for i in range(100)]
    return train_byte_level_bpe(texts, 300)


@pytest.fixture(scope="module")
def nanogpt2_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    out = tmp_path_factory.mktemp("nanogpt2")
    torch.manual_seed(0)
    eot = tokenizer.eos_token_id
    config = NanoGPT2Config(vocab_size=320, tokenizer_vocab_size=len(tokenizer), n_positions=32, n_embd=32,
                            n_layer=2, n_head=2, bos_token_id=eot, eos_token_id=eot)
    NanoGPT2LMHeadModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    out = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    eot = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=eot, eos_token_id=eot)
    GPT2LMHeadModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def samples(output: str) -> list[str]:
    """The texts printed under the '--- sample i/n ... ---' headers."""
    parts = output.split("\n--- sample ")[1:]
    return [part.split("---\n", 1)[1].rstrip("\n") for part in parts]


def test_cli_samples_from_a_nanogpt2_folder(nanogpt2_dir: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), "--model", str(nanogpt2_dir), "--prompt", PROMPT,
           "--max-new-tokens", "6", "--num-samples", "3", "--seed", "7", "--top-k", "20", "--top-p", "0.9"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "NanoGPT2LMHeadModel" in done.stdout
    texts = samples(done.stdout)
    assert len(texts) == 3 and all(t.startswith(PROMPT) for t in texts)
    assert "--- sample 3/3" in done.stdout


@pytest.mark.parametrize("model_fixture", ["nanogpt2_dir", "gpt2_dir"])
def test_seeded_sampling_is_reproducible(model_fixture: str, request, capsys) -> None:
    model_dir = request.getfixturevalue(model_fixture)
    argv = ["--model", str(model_dir), "--prompt", PROMPT, "--max-new-tokens", "8", "--num-samples", "2",
            "--seed", "3", "--temperature", "1.5", "--top-k", "0"]
    assert generate.main(argv) == 0
    first = samples(capsys.readouterr().out)
    assert generate.main(argv) == 0
    second = samples(capsys.readouterr().out)
    assert first == second and len(first) == 2
    assert generate.main([*argv[:-5], "4", "--temperature", "1.5", "--top-k", "0"]) == 0  # another seed
    assert samples(capsys.readouterr().out) != first


def test_greedy_matches_model_argmax(gpt2_dir: Path, tokenizer, capsys) -> None:
    assert generate.main(["--model", str(gpt2_dir), "--prompt", PROMPT, "--max-new-tokens", "5",
                          "--temperature", "0"]) == 0
    (text,) = samples(capsys.readouterr().out)
    # Reference: argmax decoding by hand with the same weights.
    model = GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for _ in range(5):
            next_id = model(ids).logits[0, -1].argmax()
            if next_id.item() == tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    assert text == tokenizer.decode(ids[0], skip_special_tokens=True)


def test_generation_kwargs_mapping(tokenizer) -> None:
    args = generate.parse_args(["--model", "m", "--prompt", "p", "--max-new-tokens", "9", "--temperature", "0.7",
                                "--top-k", "5", "--top-p", "0.8", "--num-samples", "4"])
    kwargs = generate.generation_kwargs(args, tokenizer)
    assert kwargs == {"max_new_tokens": 9, "num_return_sequences": 4, "pad_token_id": tokenizer.eos_token_id,
                      "do_sample": True, "temperature": 0.7, "top_k": 5, "top_p": 0.8}
    greedy = generate.generation_kwargs(generate.parse_args(["--model", "m", "--prompt", "p", "--temperature",
                                                             "0", "--num-samples", "2"]), tokenizer)
    assert greedy["do_sample"] is False and greedy["num_beams"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--temperature", "-1"], "--temperature must be >= 0"),
        (["--num-samples", "0"], "--num-samples must be > 0"),
    ],
)
def test_bad_options_are_rejected(extra: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        generate.parse_args(["--model", "m", "--prompt", "p", *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_clear_errors_for_context_and_missing_model(nanogpt2_dir: Path, tmp_path: Path, capsys) -> None:
    assert generate.main(["--model", str(nanogpt2_dir), "--prompt", PROMPT, "--max-new-tokens", "100"]) == 2
    assert "exceeds the model's context of 32 tokens" in capsys.readouterr().err
    assert generate.main(["--model", str(tmp_path / "missing"), "--prompt", PROMPT]) == 2
    assert f"cannot load {str(tmp_path / 'missing')!r}" in capsys.readouterr().err
