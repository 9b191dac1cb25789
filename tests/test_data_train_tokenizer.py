"""train_byte_level_bpe and `nanogpt2 train-tokenizer`: a tokenizer that behaves like GPT-2's, on any text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import regex
from tiktoken_ext.openai_public import r50k_pat_str  # GPT-2's split pattern, shipped with tiktoken
from transformers import AutoTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode  # GPT-2's byte -> printable character table

from nanogpt2.cli import main
from nanogpt2.data import END_OF_TEXT, SourceError, train_byte_level_bpe
from nanogpt2.utils import InputError

SAMPLES = [
    "Hello world!  The `def` statement defines a function.\n\n    return x ** 2  # comment",
    "Unicode: café, naïve, 日本語, emoji 🙂, tabs\tand\r\nCRLF.",
    "I'm sure they'll say it's 1,234.5 -- isn't it?",
]


def test_layout_and_roundtrip(tiny_tokenizer, tiny_tokenizer_dir: Path) -> None:
    assert len(tiny_tokenizer) == 300
    assert tiny_tokenizer.convert_tokens_to_ids(END_OF_TEXT) == 299  # last id, as in GPT-2
    assert tiny_tokenizer.eos_token == tiny_tokenizer.bos_token == tiny_tokenizer.unk_token == END_OF_TEXT
    loaded = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    assert type(loaded).__name__ == "GPT2Tokenizer" and len(loaded) == 300
    for text in SAMPLES:
        ids = loaded(text)["input_ids"]
        assert ids == tiny_tokenizer(text)["input_ids"]
        assert loaded.decode(ids) == text  # byte-level: every string round-trips
        assert max(ids) < 299
    # Pretraining-style encoding: a literal <|endoftext|> in text is not the special token.
    assert 299 not in loaded("a <|endoftext|> b", split_special_tokens=True)["input_ids"]
    assert loaded(END_OF_TEXT)["input_ids"] == [299]


def test_gpt2_pre_tokenization(tiny_tokenizer) -> None:
    pre = tiny_tokenizer.backend_tokenizer.pre_tokenizer
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    for text in SAMPLES:
        pieces = [bytes(byte_decoder[c] for c in piece).decode("utf-8") for piece, _ in pre.pre_tokenize_str(text)]
        assert pieces == regex.findall(r50k_pat_str, text)


def test_same_pre_tokenizer_as_the_real_gpt2(tiny_tokenizer, gpt2_tokenizer_dir: Path) -> None:
    gpt2 = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    for text in SAMPLES:
        ours = tiny_tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
        assert ours == gpt2.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)


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
    with pytest.raises(SourceError, match=r"bad.jsonl:2: no 'text' field"):
        train_byte_level_bpe([bad], 300)
    with pytest.raises(InputError, match="258"):
        train_byte_level_bpe(["x"], 100)
    with pytest.raises(SourceError, match="missing.txt"):
        train_byte_level_bpe([tmp_path / "missing.txt"], 300)


def test_train_tokenizer_command(tmp_path: Path, capsys) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("the cat sees the dog and the dog sees the cat. " * 40)
    assert main(["train-tokenizer", str(tmp_path / "tok"), str(corpus), "--vocab-size", "280"]) == 0
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert len(loaded) <= 280 and loaded.eos_token == END_OF_TEXT
    capsys.readouterr()
    assert main(["train-tokenizer", str(tmp_path / "tok2"), str(tmp_path / "nowhere.txt")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere.txt") in err and len(err.strip().splitlines()) == 1
