"""`nanogpt2 quickstart` end to end at a reduced size (corpus -> tokenizer -> shards -> train -> reload -> chat),
its tokenizer choice, and the chat stage's conversations about Python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from huggingface_hub import constants

from nanogpt2.cli import main
from nanogpt2.quickstart import tokenizer as quickstart_tokenizer
from nanogpt2.quickstart.chat_corpus import held_out_subjects, short_answer, write_chat_corpus
from nanogpt2.quickstart.pipeline import STATE_FILE
from nanogpt2.quickstart.tokenizer import TRAINED, choose_tokenizer, hub_reachable
from nanogpt2.utils import InputError, read_jsonl

STAGES = ["corpus", "tokenizer", "data", "pretraining", "reload"]
CHAT_STEPS = ["corpus", "data", "before", "sft", "answer"]
QUESTION = "What does `os.path.join` do?"
# A model and run small enough for seconds on a CPU; everything else is the quickstart's own path.
TINY = [
    "--max-tokens", "30000", "--val-tokens", "2048", "--vocab-size", "512",
    "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.seq_len=64",
    "train.micro_batch_size=4", "train.total_batch_tokens=256",
    "eval.val_tokens=512", "eval.num_samples=1", "eval.max_new_tokens=8", "eval.every=2",
]
# The chat stage at the same size: a few hundred conversations, 3 fine-tuning steps, replies of 8 tokens.
TINY_CHAT = [
    "--chat", "--question", QUESTION, "--chat-conversations", "300",
    *(f"--sft-set={override}" for override in [
        "model.seq_len=64", "train.epochs=null", "train.max_steps=3", "train.micro_batch_size=4",
        "train.total_batch_tokens=256", "eval.val_tokens=256", "eval.max_new_tokens=8"]),
]


def run_quickstart(out: Path, *args: str) -> subprocess.CompletedProcess:
    # Offline with an empty Hugging Face cache: the machine's state (a cached GPT-2) cannot change the path.
    hf_home = out.parent / "hf_home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "HF_HOME": str(hf_home),
           "HF_HUB_CACHE": str(hf_home / "hub")}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "quickstart.py"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-5000:]}"
    return done


def test_quickstart_default_path_offline_with_chat(tmp_path: Path) -> None:
    out = tmp_path / "quickstart"
    done = run_quickstart(out, "--max-steps", "4", *TINY, *TINY_CHAT)
    for index in range(1, 7):
        assert f"[{index}/6]" in done.stdout
    # Offline: the tokenizer is trained on the built-in corpus and HellaSwag is skipped.
    state = json.loads((out / STATE_FILE).read_text())
    assert state["tokenizer"]["source"] == TRAINED and "HF_HUB_OFFLINE" in state["tokenizer"]["reason"]
    assert state["sources"] == [str(out / "corpus" / "python_docs.jsonl")]
    last = state["last_run"]
    assert last["step"] == 4 and last["reloaded"] and last["hellaswag_source"] is None
    assert list(last["seconds"]) == [*STAGES, "chat", "total"]
    assert last["seconds"]["total"] >= last["seconds"]["pretraining"] + last["seconds"]["chat"]
    # The reload ran the folder's own code (transformers_modules.*), not the installed package.
    assert "loaded transformers_modules." in done.stdout and "--- sample 2/2 ---" in done.stdout

    assert (out / "corpus" / "python_docs.jsonl").is_file()
    meta = json.loads((out / "data" / "meta.json").read_text())
    assert meta["tokenizer_vocab_size"] == 512 and meta["splits"]["val"]["tokens"] >= 2048
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["n_layer"] == 1 and config["model"]["vocab_size"] == 576  # 4 spare rows, for the chat
    assert config["train"]["max_steps"] == 4 and config["data"]["path"] == str(out / "data")

    records = read_jsonl(out / "metrics.jsonl")
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

    # The chat stage: conversations without the held-out subjects, chat data, a fine-tune from final/ ...
    chat = last["chat"]
    assert list(chat["seconds"]) == CHAT_STEPS and chat["conversations"] == 300
    questions = [row["messages"][0]["content"] for row in read_jsonl(out / "chat" / "conversations.jsonl")]
    assert len(questions) == 300 and not {"json.dumps", "for", "os.path.join"} & held_out_subjects(questions)
    assert json.loads((out / "chat" / "data" / "meta.json").read_text())["content"] == "chat"
    sft_config = yaml.safe_load((out / "sft" / "config.yaml").read_text())
    assert sft_config["init_from"] == str(final) and sft_config["data"]["path"] == str(out / "chat" / "data")
    # ... whose end-of-turn rate before (the pretrained model) and after (the loop's last evaluation) is recorded ...
    assert 0.0 <= chat["eot_rate_before"] <= 1.0 and chat["final_dir"] == str(out / "sft" / "final")
    sft_evals = [r for r in read_jsonl(out / "sft" / "metrics.jsonl") if "eot_rate" in r]
    assert [r["step"] for r in sft_evals] == [3] and chat["eot_rate_after"] == sft_evals[-1]["eot_rate"]
    # ... and an answer from a fresh process (the folder's own code) through the saved chat template.
    answer = chat["answer"]
    assert answer["question"] == QUESTION and answer["answer"].strip()
    assert answer["prompt"] == f"<|endoftext|><|user|>\n{QUESTION}<|end|>\n<|assistant|>\n"
    assert answer["model_class"].startswith("transformers_modules.")
    assert f"User: {QUESTION}" in done.stdout


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
    done = run_quickstart(out, "--max-steps", "2", *common)
    assert "[5/5]" in done.stdout and "[6/" not in done.stdout  # no chat stage unless asked
    state = json.loads((out / STATE_FILE).read_text())
    assert state["sources"] == [str(corpus)] and state["tokenizer"] == {
        "source": str(gpt2_tokenizer_dir), "vocab_size": 50257, "reason": ""}
    assert state["last_run"]["hellaswag_source"] == str(hellaswag_val_path) and "chat" not in state["last_run"]
    assert not state["last_run"]["tokenizer_reused"]
    assert json.loads((out / "final" / "config.json").read_text())["vocab_size"] == 50304
    meta_written = (out / "data" / "meta.json").stat().st_mtime_ns

    # Same command with more steps: reuses the tokenizer and data, continues from the checkpoint.
    run_quickstart(out, "--max-steps", "4", *common)
    last = json.loads((out / STATE_FILE).read_text())["last_run"]
    assert last["tokenizer_reused"] and last["step"] == 4
    assert (out / "data" / "meta.json").stat().st_mtime_ns == meta_written
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # steps 1-2 were not run again
    hellaswag = [r for r in records if "hellaswag_acc_norm" in r]
    assert hellaswag and all(r["hellaswag_n"] == 8 for r in hellaswag)
    assert (out / "plots" / "hellaswag.png").stat().st_size > 10_000


def test_quickstart_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "precious.txt").write_text("not made by the quickstart")
    cases = [
        (["--out", str(tmp_path / "theirs"), "--fresh"], str(tmp_path / "theirs")),  # refuses to delete it
        (["--out", str(tmp_path / "a"), "--source", str(tmp_path / "nowhere.jsonl")], "nowhere.jsonl"),
        (["--out", str(tmp_path / "b"), "--max-steps", "0"], "--max-steps"),
        (["--out", str(tmp_path / "c"), "--chat", "--chat-conversations", "0"], "--chat-conversations"),
    ]
    for args, named in cases:
        assert main(["quickstart", *args]) == 2
        err = capsys.readouterr().err
        assert named in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "theirs" / "precious.txt").is_file()


def test_choose_tokenizer_falls_back_to_training_offline(monkeypatch) -> None:
    # conftest sets HF_HUB_OFFLINE=1; an id that no cache holds stands for GPT-2: "auto" must train, and say why.
    monkeypatch.setattr(quickstart_tokenizer, "DEFAULT_TOKENIZER", "nanogpt2-tests/no-such-tokenizer")
    texts = ["the model reads the docs and learns the words"] * 20
    tokenizer, choice = choose_tokenizer("auto", texts, vocab_size=300)
    assert choice.source == TRAINED and "nanogpt2-tests/no-such-tokenizer" in choice.reason
    assert choice.vocab_size == len(tokenizer) <= 300
    assert choose_tokenizer("train", texts, vocab_size=300)[1].reason  # says why it trained
    with pytest.raises(ValueError, match="corpus"):
        choose_tokenizer("auto")
    with pytest.raises(InputError, match="/nonexistent/tokenizer"):
        choose_tokenizer("/nonexistent/tokenizer")


def test_choose_tokenizer_uses_a_given_gpt2_folder(gpt2_tokenizer_dir: Path) -> None:
    tokenizer, choice = choose_tokenizer(str(gpt2_tokenizer_dir))
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert (choice.source, choice.vocab_size, choice.reason) == (str(gpt2_tokenizer_dir), 50257, "")


def test_hub_reachable_honours_offline_mode(monkeypatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    reachable, why = hub_reachable()
    assert not reachable and "HF_HUB_OFFLINE" in why
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing answers
    reachable, why = hub_reachable(timeout_s=1)
    assert not reachable and "127.0.0.1:9" in why


def write_fake_stdlib(root: Path) -> Path:
    """A stdlib folder with one module, `json` (a real stdlib name, so the walk keeps it)."""
    (root / "json").mkdir(parents=True)
    (root / "json" / "__init__.py").write_text('''"""JSON encoder and decoder.

More detail that the answer leaves out."""


def dumps(obj):
    """Serialize obj to a JSON formatted str."""


def loads(s):
    """Deserialize s, e.g. a str, to a Python object.  Raises an error for bad input."""


def _private(x):
    """A private helper that nobody asks about."""


def doctest_only(x):
    """>>> doctest_only(1)
    2
    """


class JSONDecoder:
    """Simple JSON decoder, turning text into objects.

    Details."""

    def decode(self, s):
        """Return the Python representation of s.
        It may span lines."""
''')
    return root


def test_write_chat_corpus_asks_about_public_docstrings_and_topics(tmp_path: Path) -> None:
    stdlib = write_fake_stdlib(tmp_path / "stdlib")
    path = tmp_path / "chat.jsonl"
    n = write_chat_corpus(path, stdlib_dir=stdlib, held_out=held_out_subjects(["What does `json.dumps` do?",
                                                                               "Explain the `for` statement."]))
    rows = read_jsonl(path)
    assert n == len(rows) and all([m["role"] for m in row["messages"]] == ["user", "assistant"] for row in rows)
    answers = {held_out_subjects([row["messages"][0]["content"]]).pop(): row["messages"][1]["content"]
               for row in rows if "`" in row["messages"][0]["content"]}
    names = ("json", "json.loads", "json.JSONDecoder", "json.JSONDecoder.decode")
    assert {name: answers.get(name) for name in names} == {
        "json": "JSON encoder and decoder.",
        "json.loads": "Deserialize s, e.g. a str, to a Python object. Raises an error for bad input.",
        "json.JSONDecoder": "Simple JSON decoder, turning text into objects.",
        "json.JSONDecoder.decode": "Return the Python representation of s. It may span lines.",
    }
    # Held out: the evaluation's subjects; left out: private names and doctests.
    assert not {"json.dumps", "for", "json._private", "json.doctest_only"} & set(answers)
    assert {"if", "while", "with"} <= set(answers)  # pydoc_data topics
    # Deterministic for a seed; another seed, another order; a cap keeps that many.
    first = path.read_bytes()
    write_chat_corpus(path, stdlib_dir=stdlib, held_out={"json.dumps", "for"})
    assert path.read_bytes() == first
    write_chat_corpus(path, stdlib_dir=stdlib, held_out={"json.dumps", "for"}, seed=1)
    assert path.read_bytes() != first and sorted(path.read_bytes().splitlines()) != sorted(first.splitlines())
    assert write_chat_corpus(path, stdlib_dir=stdlib, max_conversations=5) == len(read_jsonl(path)) == 5


def test_short_answer_cuts_after_a_whole_sentence() -> None:
    text = "Return a copy. The copy is shallow, e.g. nested lists are shared. It is fast."
    assert short_answer(text, 200) == text
    assert short_answer(text, 70) == "Return a copy. The copy is shallow, e.g. nested lists are shared."
    assert short_answer(text, 20) == "Return a copy."
    assert short_answer("A run-on fragment without any sentence end at all " * 3, 40) is None
    assert short_answer("The grammar is as follows:", 200) == "The grammar is as follows."
    assert short_answer(">>> f(1)\n2", 200) is None and short_answer("f(x) -> int", 200) is None
    assert short_answer("Too short.", 200) is None
