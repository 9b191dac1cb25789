"""The quickstart's built-in corpus: Python's own documentation, read from the installed interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanogpt2.quickstart.corpus import module_document, stdlib_source_files, write_builtin_corpus
from nanogpt2.utils import read_jsonl


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
    with pytest.raises(ValueError, match="max_docs"):
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
