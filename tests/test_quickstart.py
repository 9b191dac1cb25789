"""scripts/quickstart.py end to end at a reduced size: corpus -> tokenizer -> shards -> train -> reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "quickstart.py"

try:
    from nanogpt2.training import train  # noqa: F401
except ImportError as error:  # the pipeline needs the training package
    pytest.skip(f"nanogpt2.training.train is not importable ({error})", allow_module_level=True)

# A model and run small enough for seconds on a CPU; everything else is the quickstart's own path.
TINY = [
    "--max-tokens", "30000", "--val-tokens", "2048", "--vocab-size", "512",
    "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.seq_len=64",
    "train.micro_batch_size=4", "train.total_batch_tokens=256",
    "eval.val_tokens=512", "eval.num_samples=1", "eval.max_new_tokens=8", "eval.every=2",
]


def run_quickstart(out: Path, *args: str) -> subprocess.CompletedProcess:
    # Offline with an empty Hugging Face cache: the machine's state (a cached GPT-2) cannot change the path.
    hf_home = out.parent / "hf_home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "HF_HOME": str(hf_home),
           "HF_HUB_CACHE": str(hf_home / "hub")}
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-5000:]}"
    return done


def metric_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_quickstart_default_path_offline(tmp_path: Path) -> None:
    out = tmp_path / "quickstart"
    done = run_quickstart(out, "--max-steps", "4", *TINY)
    stdout = done.stdout
    for index in range(1, 6):
        assert f"[{index}/5]" in stdout
    # Offline: the tokenizer is trained on the built-in corpus and HellaSwag is skipped, both said.
    assert "Python's own documentation" in stdout
    assert "a byte-level BPE with GPT-2's pre-tokenization trained on the corpus" in stdout
    assert "because GPT-2's tokenizer is unavailable" in stdout
    assert "HellaSwag: skipped" in stdout and "pass --hellaswag FILE.jsonl" in stdout
    # The reload ran the folder's own code (transformers_modules.*), not the installed package.
    assert "loaded transformers_modules." in stdout and "--- sample 2/2 ---" in stdout
    assert "Done in" in stdout and f"final model  {out / 'final'}" in stdout

    assert (out / "corpus" / "python_docs.jsonl").is_file()
    meta = json.loads((out / "data" / "meta.json").read_text())
    assert meta["tokenizer_vocab_size"] == 512 and meta["splits"]["val"]["tokens"] >= 2048
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["n_layer"] == 1 and config["model"]["vocab_size"] == 512
    assert config["train"]["max_steps"] == 4 and config["data"]["path"] == str(out / "data")

    records = metric_records(out)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in records if "val_loss" in r] == [2, 4]
    loss_png = out / "plots" / "loss.png"
    assert loss_png.read_bytes().startswith(b"\x89PNG") and loss_png.stat().st_size > 10_000
    assert not (out / "plots" / "hellaswag.png").exists()

    final = out / "final"
    model_config = json.loads((final / "config.json").read_text())
    assert model_config["model_type"] == "nanogpt2" and "AutoModelForCausalLM" in model_config["auto_map"]
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"):
        assert (final / name).is_file(), name
    from transformers import AutoTokenizer

    text = "def f(x):\n    return x"
    assert (AutoTokenizer.from_pretrained(final)(text)["input_ids"]
            == AutoTokenizer.from_pretrained(out / "tokenizer")(text)["input_ids"])


def test_quickstart_gpt2_tokenizer_hellaswag_and_rerun(
    tmp_path: Path, gpt2_tokenizer_dir: Path, hellaswag_val_path: Path
) -> None:
    out = tmp_path / "quickstart"
    corpus = tmp_path / "my_corpus.jsonl"  # the user's own files, one flag
    words = "the model reads each document and learns which token comes next in the text".split()
    corpus.write_text("".join(
        json.dumps({"text": " ".join(words[(i + j * 7) % len(words)] for j in range(120))}) + "\n"
        for i in range(200)
    ))
    common = ["--source", str(corpus), "--tokenizer", str(gpt2_tokenizer_dir), "--hellaswag",
              str(hellaswag_val_path), *TINY, "eval.hellaswag_limit=8"]
    first = run_quickstart(out, "--max-steps", "2", *common)
    assert f"your files: 1 file(s) from {corpus}" in first.stdout
    assert f"using {gpt2_tokenizer_dir} (50,257 tokens)" in first.stdout
    assert f"HellaSwag: from {hellaswag_val_path}" in first.stdout
    assert "HellaSwag acc_norm" in first.stdout  # in the summary
    assert json.loads((out / "final" / "config.json").read_text())["vocab_size"] == 50304

    # Same command with more steps: reuses the tokenizer and data, continues from the checkpoint.
    second = run_quickstart(out, "--max-steps", "4", *common)
    assert "[reused from" in second.stdout
    assert "resumed from" in second.stdout + second.stderr
    records = metric_records(out)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    hellaswag = [r for r in records if "hellaswag_acc_norm" in r]
    assert hellaswag and all(r["hellaswag_n"] == 8 for r in hellaswag)
    assert (out / "plots" / "hellaswag.png").stat().st_size > 10_000
