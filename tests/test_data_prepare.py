"""prepare_data on generated text with tokenizers trained here: layout, ids, limits, re-runs, kills."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from nanogpt2.data import (
    END_OF_TEXT,
    OutputExistsError,
    load_data_tokenizer,
    load_meta,
    prepare_data,
    tokenizer_fingerprint,
    train_byte_level_bpe,
)
from nanogpt2.data.tokenization import build_document_encoder
from nanogpt2.utils import InputError

EOT = END_OF_TEXT
WORDS = (
    "the of and to in is was for on that with as by at from it an be this are which or have has not but were "
    "their also its one all new more two first other after can would who been café naïve Ελληνικά 中文 😀 "
    "don't it's 1984 3.14 x**2 (a) [b] {c}"
).split()


def mixed_documents(count: int, seed: int = 0, max_words: int = 60) -> list[str]:
    """Random words with punctuation, digits, unicode and newlines: what tells tokenizer code paths apart."""
    rng = random.Random(seed)
    docs = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, max_words))]
        docs.append(" ".join(words) + rng.choice([".", "!\n", "?\n\n", "  ", "\tend"]))
    return docs


def train_whitespace_bpe(texts: list[str]) -> PreTrainedTokenizerFast:
    """A BPE that is not byte-level (whitespace pre-tokenizer): forces the Hugging Face encoder."""
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[EOT, "[UNK]"], show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOT, unk_token="[UNK]")


def reference_ids(tokenizer, docs: list[str]) -> list[int]:
    """[EOT] + ids of each document through transformers, special tokens split as text."""
    stream: list[int] = []
    for ids in tokenizer(docs, add_special_tokens=False, split_special_tokens=True)["input_ids"]:
        stream += [tokenizer.eos_token_id, *ids]
    return stream


def stored_stream(data_dir: Path, split: str) -> np.ndarray:
    column = load_from_disk(str(data_dir / split)).data.column("input_ids")
    return np.concatenate([chunk.flatten().to_numpy() for chunk in column.chunks])


def write_jsonl(path: Path, docs: list[str | None], column: str = "text") -> Path:
    path.write_text("".join(json.dumps({column: doc, "id": i}) + "\n" for i, doc in enumerate(docs)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def docs() -> list[str]:
    docs = mixed_documents(400)
    docs[5] = f"a literal {EOT} inside {EOT}{EOT} the text"
    return docs


def test_output_layout_meta_and_ids(tmp_path, tiny_tokenizer, docs):
    source = tmp_path / "corpus"
    source.mkdir()
    write_jsonl(source / "a.jsonl", docs[:250])
    write_jsonl(source / "b.jsonl", docs[250:])
    out = prepare_data([str(source)], tmp_path / "out", tokenizer=tiny_tokenizer, val_tokens=2_000,
                       tokens_per_shard=3_000, verbose=False)

    meta = load_meta(out)
    assert meta["encoder"] == "tiktoken"  # the trained byte-level BPE qualifies for the fast path
    assert meta["dtype"] == "uint16" and meta["eot_id"] == tiny_tokenizer.eos_token_id
    assert meta["tokenizer_hash"] == tokenizer_fingerprint(tiny_tokenizer)
    expected = reference_ids(tiny_tokenizer, docs)
    val, train = stored_stream(out, "val"), stored_stream(out, "train")
    assert val.dtype == np.uint16
    assert np.concatenate([val, train]).tolist() == expected
    # Validation: the shortest prefix of whole documents holding >= val_tokens tokens.
    val_split = meta["splits"]["val"]
    last_doc = len(load_from_disk(str(out / "val"))[-1]["input_ids"])
    assert val_split["tokens"] >= 2_000 > val_split["tokens"] - last_doc
    assert meta["documents"] == len(docs) == val_split["documents"] + meta["splits"]["train"]["documents"]
    for split in ("train", "val"):
        info = meta["splits"][split]
        assert sum(shard["tokens"] for shard in info["shards"]) == info["tokens"]
        assert sum(shard["documents"] for shard in info["shards"]) == info["documents"]
        assert sorted(p.name for p in (out / split).glob("*.arrow")) == [s["file"] for s in info["shards"]]
        assert load_from_disk(str(out / split)).cache_files  # memory-mapped, not in memory
    assert len(meta["splits"]["train"]["shards"]) == -(-meta["splits"]["train"]["tokens"] // 3_000)
    # A literal <|endoftext|> in the text is ordinary text: the document has exactly one EOT.
    doc5 = load_from_disk(str(out / "val"))[5]["input_ids"]
    assert doc5.count(meta["eot_id"]) == 1 and doc5[0] == meta["eot_id"]
    assert tokenizer_fingerprint(load_data_tokenizer(out)) == meta["tokenizer_hash"]
    assert not list(tmp_path.glob(".out.incomplete-*"))


def test_general_encoder_for_non_tiny_tokenizer(tmp_path, docs):
    tokenizer = train_whitespace_bpe(docs)
    encoder, description = build_document_encoder(tokenizer, "text")
    assert encoder.path == "huggingface" and "Whitespace" in description
    out = prepare_data(str(write_jsonl(tmp_path / "d.jsonl", docs)), tmp_path / "out", tokenizer=tokenizer,
                       val_tokens=500, verbose=False)
    assert load_meta(out)["encoder"] == "huggingface"
    stream = np.concatenate([stored_stream(out, "val"), stored_stream(out, "train")])
    assert stream.tolist() == reference_ids(tokenizer, docs)


def test_tokenizer_given_by_path_and_fingerprint_stability(tmp_path, tiny_tokenizer, docs):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    out = prepare_data(str(write_jsonl(tmp_path / "d.jsonl", docs)), tmp_path / "out",
                       tokenizer=str(tmp_path / "tok"), val_tokens=500, verbose=False)
    assert load_meta(out)["tokenizer_hash"] == tokenizer_fingerprint(tiny_tokenizer)
    other = train_byte_level_bpe(mixed_documents(300, seed=2), 300, min_frequency=1)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tiny_tokenizer)


def test_large_vocabulary_is_stored_as_uint32(tmp_path):
    vocab = {EOT: 0, "[UNK]": 1} | {f"w{i}": i + 2 for i in range(70_000)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOT, unk_token="[UNK]")
    docs = [" ".join(f"w{(i * 7919 + j * 104729) % 70_000}" for j in range(30)) for i in range(40)]
    out = prepare_data(str(write_jsonl(tmp_path / "d.jsonl", docs)), tmp_path / "out", tokenizer=wrapped,
                       val_tokens=100, verbose=False)
    assert load_meta(out)["dtype"] == "uint32"
    stream = np.concatenate([stored_stream(out, "val"), stored_stream(out, "train")])
    assert stream.dtype == np.uint32 and stream.tolist() == reference_ids(wrapped, docs)
    assert stream.max() > 2**16


def test_txt_sources_one_document_per_file_or_per_paragraph(tmp_path, tiny_tokenizer, docs):
    folder = tmp_path / "txt"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.txt").write_text("\n\n".join(docs[i * 10 : i * 10 + 10]), encoding="utf-8")
    whole = prepare_data(str(folder / "*.txt"), tmp_path / "whole", tokenizer=tiny_tokenizer,
                         val_tokens=1, verbose=False)
    assert load_meta(whole)["documents"] == 4
    parts = prepare_data([str(folder)], tmp_path / "parts", tokenizer=tiny_tokenizer, val_tokens=1,
                         txt_split="paragraph", verbose=False)
    expected_docs = [d.strip("\n") for i in range(4) for d in "\n\n".join(docs[i * 10 : i * 10 + 10]).split("\n\n")
                     if d.strip()]
    assert load_meta(parts)["documents"] == len(expected_docs)
    stream = np.concatenate([stored_stream(parts, "val"), stored_stream(parts, "train")])
    assert stream.tolist() == reference_ids(tiny_tokenizer, expected_docs)


def test_max_tokens_and_max_docs_keep_whole_documents(tmp_path, tiny_tokenizer, docs):
    source = str(write_jsonl(tmp_path / "d.jsonl", docs))
    lengths = [len(ids) for ids in tiny_tokenizer(docs, split_special_tokens=True)["input_ids"]]
    cumulative = np.cumsum(np.array(lengths) + 1)
    limit = int(cumulative[-1] // 3) + 5
    out = prepare_data(source, tmp_path / "tok", tokenizer=tiny_tokenizer, val_tokens=300,
                       max_tokens=limit, verbose=False)
    meta = load_meta(out)
    assert meta["tokens"] == cumulative[cumulative <= limit][-1]
    assert meta["documents"] == int((cumulative <= limit).sum())
    out = prepare_data(source, tmp_path / "docs", tokenizer=tiny_tokenizer, val_tokens=300, max_docs=37,
                       verbose=False)
    assert load_meta(out)["documents"] == 37 and load_meta(out)["tokens"] == cumulative[36]
    with pytest.raises(InputError, match="max_tokens=300"):
        prepare_data(source, tmp_path / "bad", tokenizer=tiny_tokenizer, val_tokens=300, max_tokens=300)


def test_validation_larger_than_source_is_a_clear_error(tmp_path, tiny_tokenizer, docs):
    with pytest.raises(InputError, match="10000000"):
        prepare_data(str(write_jsonl(tmp_path / "d.jsonl", docs)), tmp_path / "out",
                     tokenizer=tiny_tokenizer, val_tokens=10_000_000, verbose=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.incomplete-*"))


def test_rerun_same_arguments_is_a_no_op_and_different_arguments_fail(tmp_path, tiny_tokenizer, docs, capsys):
    source = str(write_jsonl(tmp_path / "d.jsonl", docs))
    out = prepare_data(source, tmp_path / "out", tokenizer=tiny_tokenizer, val_tokens=500, verbose=False)
    meta_mtime = (out / "meta.json").stat().st_mtime_ns
    again = prepare_data(source, tmp_path / "out", tokenizer=tiny_tokenizer, val_tokens=500, num_proc=2)
    assert again == out and (out / "meta.json").stat().st_mtime_ns == meta_mtime
    assert str(out) in capsys.readouterr().err  # says so, naming the folder
    with pytest.raises(OutputExistsError, match=r"\(val_tokens\)"):
        prepare_data(source, tmp_path / "out", tokenizer=tiny_tokenizer, val_tokens=600, verbose=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="junk"):
        prepare_data(source, tmp_path / "junk", tokenizer=tiny_tokenizer, val_tokens=500, verbose=False)
    assert (out / "meta.json").stat().st_mtime_ns == meta_mtime


def test_num_proc_gives_identical_output(tmp_path, tiny_tokenizer, docs, monkeypatch):
    from nanogpt2.data import prepare as prepare_module

    monkeypatch.setattr(prepare_module, "MIN_TEXT_BYTES_FOR_WORKERS", 0)  # use the worker pool on tiny input
    source = str(write_jsonl(tmp_path / "d.jsonl", docs * 3))
    one = prepare_data(source, tmp_path / "one", tokenizer=tiny_tokenizer, val_tokens=500, verbose=False)
    two = prepare_data(source, tmp_path / "two", tokenizer=tiny_tokenizer, val_tokens=500, num_proc=2,
                       verbose=False)
    for split in ("train", "val"):
        assert np.array_equal(stored_stream(one, split), stored_stream(two, split))


def test_incomplete_folders_are_never_used_as_data(tmp_path):
    from nanogpt2.data import TokenLoader

    (tmp_path / "no_meta" / "train").mkdir(parents=True)
    with pytest.raises(InputError, match="no_meta"):
        TokenLoader(tmp_path / "no_meta", "train", 1, 4)
    with pytest.raises(InputError, match="nowhere"):
        load_meta(tmp_path / "nowhere")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "meta.json").write_text('{"format": "nanogpt2-tok')
    with pytest.raises(InputError, match="partial"):
        load_meta(tmp_path / "partial")


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from nanogpt2.data import prepare_data
    from transformers import AutoTokenizer
    prepare_data(sys.argv[1], sys.argv[2], tokenizer=AutoTokenizer.from_pretrained(sys.argv[3]), val_tokens=1000)
    """
)


def test_killed_run_leaves_no_data_and_the_next_run_completes(tmp_path, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    source = write_jsonl(tmp_path / "big.jsonl", mixed_documents(6_000, seed=3, max_words=200))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(source), str(out), str(tmp_path / "tok")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".out.incomplete-*/staging/*.arrow")) and time.time() < deadline:
        assert process.poll() is None, "preparation ended before it could be killed"
        time.sleep(0.01)
    assert process.poll() is None
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists()  # nothing a loader could mistake for data
    assert list(tmp_path.glob(".out.incomplete-*"))  # the dead run's work folder
    result = prepare_data(str(source), out, tokenizer=tiny_tokenizer, val_tokens=1000, verbose=False)
    assert load_meta(result)["documents"] == 6_000
    assert not list(tmp_path.glob(".out.incomplete-*"))  # cleaned up by the next run


def test_max_tokens_reads_more_rounds_when_the_estimate_falls_short(tmp_path, tiny_tokenizer, monkeypatch):
    from nanogpt2.data import prepare as prepare_module

    # The first documents (the calibration sample) are rare unicode, several tokens per character;
    # the rest is common words, several characters per token: the first character budget is short.
    monkeypatch.setattr(prepare_module, "PROBE_SAMPLE_CHARS", 500)
    rounds = []
    tokenize_file = prepare_module._tokenize_file
    monkeypatch.setattr(prepare_module, "_tokenize_file", lambda *args: rounds.append(args) or tokenize_file(*args))
    rng = random.Random(4)
    docs = ["".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(40)) for _ in range(20)]
    docs += mixed_documents(300, seed=4)
    lengths = [len(ids) + 1 for ids in tiny_tokenizer(docs, split_special_tokens=True)["input_ids"]]
    cumulative = np.cumsum(lengths)
    limit = int(cumulative[-1] * 0.6)
    out = prepare_data(str(write_jsonl(tmp_path / "d.jsonl", docs)), tmp_path / "out", tokenizer=tiny_tokenizer,
                       val_tokens=100, max_tokens=limit, verbose=False)
    meta = load_meta(out)
    assert len(rounds) >= 2
    assert meta["tokens"] == cumulative[cumulative <= limit][-1]
    assert meta["documents"] == int((cumulative <= limit).sum())
    stream = np.concatenate([stored_stream(out, "val"), stored_stream(out, "train")])
    assert stream.tolist() == reference_ids(tiny_tokenizer, docs[: meta["documents"]])
