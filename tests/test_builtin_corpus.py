"""The built-in corpus (Python's own documentation) and the GPT-2-style tokenizer trained on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from nanogpt2.data import train_tokenizer
from nanogpt2.data.builtin_corpus import (
    module_document,
    stdlib_source_files,
    write_builtin_corpus,
)
from nanogpt2.data.train_tokenizer import EOT, resolve_tokenizer, train_byte_level_bpe


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def corpus_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_builtin_corpus(tmp_path_factory.mktemp("corpus") / "python_docs.jsonl")


@pytest.fixture(scope="module")
def corpus(corpus_path: Path) -> list[dict]:
    return read_jsonl(corpus_path)


# --- corpus ---------------------------------------------------------------------------------------


def test_corpus_holds_topics_and_stdlib_docstrings(corpus: list[dict]) -> None:
    sources = [doc["source"] for doc in corpus]
    assert len(sources) == len(set(sources)), "each topic / module appears once"
    topics = {s.split(":", 1)[1] for s in sources if s.startswith("pydoc_data.topics:")}
    modules = {s.split(":", 1)[1] for s in sources if s.startswith("stdlib:")}
    assert {"assert", "for", "if"} <= topics
    assert {"json", "json.decoder", "collections", "argparse"} <= modules
    assert sum(len(doc["text"]) for doc in corpus) > 1_000_000  # enough text for a small model
    by_source = {doc["source"]: doc["text"] for doc in corpus}
    assert 'The "for" statement' in by_source["pydoc_data.topics:for"]
    assert "def json.loads(" in by_source["stdlib:json"]
    assert all(doc["text"].strip() == doc["text"] and doc["text"] for doc in corpus)


def test_corpus_skips_tests_gui_and_non_stdlib(corpus: list[dict]) -> None:
    modules = [doc["source"].split(":", 1)[1] for doc in corpus if doc["source"].startswith("stdlib:")]
    for module in modules:
        parts = module.split(".")
        assert not {"test", "tests", "idle_test", "idlelib"} & set(parts), module
        assert "site-packages" not in module
    assert not any(m.startswith(("transformers", "torch", "numpy")) for m in modules)


def test_corpus_is_deterministic_and_seed_controls_order(corpus_path: Path, tmp_path: Path) -> None:
    again = write_builtin_corpus(tmp_path / "again.jsonl")
    assert again.read_bytes() == corpus_path.read_bytes()
    # Order checks on the topics alone (fast): a seed permutes, no seed keeps them sorted.
    by_seed = {
        seed: [d["source"] for d in read_jsonl(write_builtin_corpus(
            tmp_path / f"{seed}.jsonl", docstrings=False, shuffle_seed=seed))]
        for seed in (0, 1, None)
    }
    assert by_seed[0] != by_seed[1] and sorted(by_seed[0]) == sorted(by_seed[1]) == by_seed[None]
    assert len(by_seed[None]) > 50


def test_corpus_limits_and_atomic_output(tmp_path: Path) -> None:
    path = write_builtin_corpus(tmp_path / "few.jsonl", max_docs=5, docstrings=False)
    assert len(read_jsonl(path)) == 5
    by_chars = read_jsonl(write_builtin_corpus(tmp_path / "chars.jsonl", max_chars=20_000, docstrings=False))
    total = sum(len(d["text"]) for d in by_chars)
    assert total >= 20_000 and total - len(by_chars[-1]["text"]) < 20_000  # stops after crossing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chars.jsonl", "few.jsonl"]  # no temporaries
    with pytest.raises(ValueError, match="max_docs must be positive"):
        write_builtin_corpus(tmp_path / "bad.jsonl", max_docs=0)


def test_stdlib_walk_and_docstring_document(tmp_path: Path) -> None:
    """On a fake stdlib folder: which files are read, and how a module becomes a document."""
    files = {
        "json/__init__.py": '"""JSON package."""\n',
        "json/decoder.py": (
            '"""Decoder."""\n'
            "class JSONDecoder:\n"
            '    """Decodes JSON."""\n'
            "    def decode(self, s, *, strict=True):\n"
            '        """Return the object of s."""\n'
            "async def later():\n"
            '    """Awaitable."""\n'
            "def undocumented():\n"
            "    pass\n"
        ),
        "json/tests/test_x.py": '"""A test."""\n',
        "test/regrtest.py": '"""Test runner."""\n',
        "site-packages/pkg.py": '"""Installed."""\n',
        "abc.py": "def broken(:\n",  # does not parse: skipped
        "__hello__.py": '"""Not a stdlib module name."""\n',
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = stdlib_source_files(tmp_path)
    assert [name for name, _ in found] == ["abc", "json", "json.decoder"]
    assert module_document("abc", tmp_path / "abc.py") is None
    doc = module_document("json.decoder", tmp_path / "json/decoder.py")
    assert doc == (
        "Module json.decoder\n\nDecoder.\n\n"
        "class json.decoder.JSONDecoder\n\nDecodes JSON.\n\n"
        "def json.decoder.JSONDecoder.decode(self, s, *, strict=True)\n\nReturn the object of s.\n\n"
        "async def json.decoder.later()\n\nAwaitable."
    )


def test_corpus_command_line(tmp_path: Path) -> None:
    from nanogpt2.data.builtin_corpus import main

    main([str(tmp_path / "cli.jsonl"), "--max-docs", "3", "--no-docstrings", "--no-shuffle"])
    docs = read_jsonl(tmp_path / "cli.jsonl")
    assert [d["source"] for d in docs] == sorted(d["source"] for d in docs)
    assert all(d["source"].startswith("pydoc_data.topics:") for d in docs) and len(docs) == 3


# --- tokenizer ------------------------------------------------------------------------------------

SAMPLES = [
    "Hello world!  The `def` statement defines a function.\n\n    return x ** 2  # comment",
    "Unicode: café, naïve, 日本語, emoji 🙂, tabs\tand\r\nCRLF.",
    "I'm sure they'll say it's 1,234.5 -- isn't it?",
]


@pytest.fixture(scope="module")
def trained(corpus: list[dict], tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    out = tmp_path_factory.mktemp("tokenizer")
    texts = [doc["text"] for doc in corpus[:200]]
    return train_byte_level_bpe(texts, 2048, out), out


def test_trained_tokenizer_layout_and_roundtrip(trained: tuple[object, Path]) -> None:
    tokenizer, out = trained
    assert len(tokenizer) == 2048
    assert tokenizer.convert_tokens_to_ids(EOT) == 2047  # last id, as in GPT-2
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.unk_token == EOT
    loaded = AutoTokenizer.from_pretrained(out)
    assert type(loaded).__name__ == "GPT2Tokenizer" and len(loaded) == 2048
    for text in SAMPLES:
        ids = loaded(text)["input_ids"]
        assert ids == tokenizer(text)["input_ids"]
        assert loaded.decode(ids) == text  # byte-level: every string round-trips
        assert max(ids) < 2047
    # Pretraining-style encoding: a literal <|endoftext|> in text is not the special token.
    assert 2047 not in loaded("a <|endoftext|> b", split_special_tokens=True)["input_ids"]
    assert loaded(EOT)["input_ids"] == [2047]


def test_trained_tokenizer_uses_gpt2_pre_tokenization(trained: tuple[object, Path]) -> None:
    import regex
    from tiktoken_ext.openai_public import r50k_pat_str  # GPT-2's split pattern, shipped with tiktoken

    tokenizer, _ = trained
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
    for text in SAMPLES:
        pieces = [bytes(byte_decoder[c] for c in piece).decode("utf-8") for piece, _ in pre.pre_tokenize_str(text)]
        assert pieces == regex.findall(r50k_pat_str, text)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for b in range(256):
        if b in visible:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def test_trained_tokenizer_matches_gpt2_pre_tokenizer(
    trained: tuple[object, Path], gpt2_tokenizer_dir: Path
) -> None:
    """Same pre-tokenizer output and decoder behaviour as the real GPT-2 tokenizer."""
    tokenizer, _ = trained
    gpt2 = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    for text in SAMPLES:
        ours = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
        theirs = gpt2.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
        assert ours == theirs


def test_train_from_files_and_bad_input(tmp_path: Path) -> None:
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": f"document number {i} about tokens"}) for i in range(50)))
    txt = tmp_path / "notes.txt"
    txt.write_text("plain text file about tokens " * 20)
    tokenizer = train_byte_level_bpe([jsonl, txt], 300)
    assert "Ġtokens" in tokenizer.get_vocab()  # learned from both files
    assert "{\"" not in tokenizer.get_vocab()  # jsonl read through its text field, not raw lines
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object with a 'text' field"):
        train_byte_level_bpe([bad], 300)
    with pytest.raises(ValueError, match="at least 258"):
        train_byte_level_bpe(["x"], 100)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_byte_level_bpe([tmp_path / "missing.txt"], 300)


def test_resolve_tokenizer_falls_back_to_training_offline(tmp_path: Path, monkeypatch) -> None:
    # conftest sets HF_HUB_OFFLINE=1; an id that no cache holds stands for GPT-2: "auto" must train, and say why.
    monkeypatch.setattr(train_tokenizer, "GPT2_HUB_ID", "nanogpt2-tests/no-such-tokenizer")
    texts = ["the model reads the docs and learns the words"] * 20
    tokenizer, description = resolve_tokenizer("auto", corpus=texts, vocab_size=300, out_dir=tmp_path / "tok")
    assert "trained on the corpus" in description and "GPT-2's tokenizer is unavailable" in description
    assert (tmp_path / "tok" / "tokenizer.json").is_file() and len(tokenizer) <= 300
    _, description = resolve_tokenizer("train", corpus=texts, vocab_size=300)
    assert "because asked to train one" in description
    with pytest.raises(ValueError, match="no corpus"):
        resolve_tokenizer("auto")
    with pytest.raises(OSError, match="cannot load the tokenizer '/nonexistent/tokenizer'"):
        resolve_tokenizer("/nonexistent/tokenizer")


def test_resolve_tokenizer_uses_a_given_gpt2_folder(gpt2_tokenizer_dir: Path) -> None:
    tokenizer, description = resolve_tokenizer(str(gpt2_tokenizer_dir))
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert str(gpt2_tokenizer_dir) in description and "50,257 tokens" in description
