"""`nanogpt2 eval-hellaswag` (and its script): loads transformers GPT-2 and nanogpt2 folders, writes the
metrics as JSON, and turns every bad input into one `error:` line and exit status 2."""

import json
import subprocess
import sys

import pytest
from _hellaswag_helpers import make_examples, tiny_gpt2, tiny_nanogpt2, write_jsonl
from conftest import REPO_ROOT

from nanogpt2.cli import main
from nanogpt2.evaluation import evaluate_hellaswag, load_hellaswag


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_tokenizer):
    """A saved transformers GPT-2 and a saved nanogpt2 (with the tiny tokenizer), and 14 examples."""
    root = tmp_path_factory.mktemp("hellaswag_cli")
    models = {"gpt2": tiny_gpt2(len(tiny_tokenizer), seed=2), "nanogpt2": tiny_nanogpt2(len(tiny_tokenizer), seed=2)}
    for name, model in models.items():
        model.save_pretrained(root / name)
        tiny_tokenizer.save_pretrained(root / name)
    return root, write_jsonl(root / "val.jsonl", make_examples(14, seed=2)), models


@pytest.mark.parametrize(("name", "style"), [("gpt2", "nanogpt"), ("gpt2", "lm-eval"), ("nanogpt2", "nanogpt")])
def test_writes_the_metrics(saved, tiny_tokenizer, name, style):
    root, data, models = saved
    output = root / f"out-{name}-{style}" / "result.json"
    argv = ["eval-hellaswag", "--model", str(root / name), "--data", str(data), "--style", style, "--limit", "11",
            "--batch-size", "4", "--output", str(output), "--no-progress"]
    assert main(argv) == 0
    expected = evaluate_hellaswag(models[name], tiny_tokenizer, load_hellaswag(data, limit=11), style=style,
                                  progress=False)
    assert json.loads(output.read_text()) == {**expected, "style": style, "data": str(data), "model": str(root / name)}


def test_script_runs_the_verb(saved, tmp_path):
    root, data, _ = saved
    command = [sys.executable, str(REPO_ROOT / "scripts" / "eval_hellaswag.py"), "--model", str(root / "gpt2"),
               "--data", str(data), "--limit", "3", "--output", str(tmp_path / "r.json")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 3


@pytest.mark.parametrize("flags", [["--limit", "0"], ["--batch-size", "0"], ["--style", "gpt3"]])
def test_bad_flag_values_exit_2(capsys, flags):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval-hellaswag", "--model", "x", *flags])
    assert exit_info.value.code == 2 and flags[0] in capsys.readouterr().err


def run_with_bad_input(capsys, saved, data, model="gpt2") -> str:
    """Run the verb; it must exit 2 with one `error:` line and no traceback. Returns that line."""
    root = saved[0]
    code = main(["eval-hellaswag", "--model", str(root / model) if model == "gpt2" else model,
                 "--data", str(data), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


def test_missing_hellaswag_file(capsys, saved, tmp_path):
    missing = tmp_path / "no-such-hellaswag.jsonl"
    assert str(missing) in run_with_bad_input(capsys, saved, missing)


@pytest.mark.parametrize("row", [{"endings": []}, {"label": 7}, "{not json"], ids=["no-endings", "label", "json"])
def test_bad_row_names_file_and_line(capsys, saved, tmp_path, row):
    lines = [json.dumps(example) for example in make_examples(4)]
    lines[2] = row if isinstance(row, str) else json.dumps({**make_examples(1)[0], **row})
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(lines) + "\n")
    assert f"{data}:3:" in run_with_bad_input(capsys, saved, data)


def test_model_id_that_cannot_be_loaded_offline(capsys, saved):
    assert "nobody-here/no-such-model" in run_with_bad_input(capsys, saved, saved[1], model="nobody-here/no-such-model")
