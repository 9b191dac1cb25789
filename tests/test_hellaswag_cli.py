"""scripts/eval_hellaswag.py: loads transformers GPT-2 and nanogpt2 folders, prints and writes metrics."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _hellaswag_helpers import make_examples, tiny_gpt2, train_tiny_tokenizer, write_jsonl

from nanogpt2.evaluation import evaluate_hellaswag, load_hellaswag
from nanogpt2.evaluation.hellaswag_cli import main, parse_args

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_hellaswag.py"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("hellaswag_cli")
    examples = make_examples(14, seed=2)
    tokenizer = train_tiny_tokenizer(examples)
    model = tiny_gpt2(len(tokenizer), seed=2)
    model.save_pretrained(root / "gpt2")
    tokenizer.save_pretrained(root / "gpt2")
    return root, write_jsonl(root / "val.jsonl", examples), model, tokenizer


@pytest.mark.parametrize("style", ["nanogpt", "lm-eval"])
def test_cli_prints_and_writes_the_metrics(saved, capsys, style):
    root, data, model, tokenizer = saved
    output = root / f"out-{style}" / "result.json"
    argv = [
        "--model",
        str(root / "gpt2"),
        "--data",
        str(data),
        "--style",
        style,
        "--limit",
        "11",
        "--batch-size",
        "4",
        "--output",
        str(output),
        "--no-progress",
    ]
    main(argv)
    written = json.loads(output.read_text())
    expected = evaluate_hellaswag(model, tokenizer, load_hellaswag(data, limit=11), style=style, progress=False)
    assert written == {**expected, "style": style, "data": str(data), "model": str(root / "gpt2")}
    printed = capsys.readouterr().out
    for key in ("acc", "acc_norm", "acc_norm_chars"):
        assert f"{key} " in printed and f"{expected[key]:.4f}" in printed
    assert re.search(r"^n\s+11$", printed, flags=re.MULTILINE)


def test_cli_loads_a_nanogpt2_folder(saved, tmp_path):
    modeling = pytest.importorskip("nanogpt2.modeling", reason="nanogpt2.modeling is not importable")
    root, data, _, tokenizer = saved
    torch.manual_seed(0)
    config = modeling.NanoGPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2)
    model = modeling.NanoGPT2LMHeadModel(config)
    model.save_pretrained(tmp_path / "nano")
    tokenizer.save_pretrained(tmp_path / "nano")
    record = main(["--model", str(tmp_path / "nano"), "--data", str(data), "--no-progress"])
    expected = evaluate_hellaswag(model, tokenizer, load_hellaswag(data), progress=False)
    assert {k: record[k] for k in expected} == expected


def test_script_runs_as_a_command(saved, tmp_path):
    root, data, _, _ = saved
    command = [
        sys.executable,
        str(SCRIPT),
        "--model",
        str(root / "gpt2"),
        "--data",
        str(data),
        "--limit",
        "3",
        "--output",
        str(tmp_path / "r.json"),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--limit", "0"], "--limit must be >= 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--style", "gpt3"], "invalid choice: 'gpt3'"),
    ],
)
def test_bad_arguments_are_rejected(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--model", "x", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
