"""The real GPT-2 tokenizer and FineWeb-Edu text from ../shared (skipped when absent).

Reference ids come from tiktoken's own GPT-2 loader applied to the tokenizer's ``merges.txt`` /
``vocab.json`` (the files of tiktoken's ``gpt2`` encoding), independently of nanogpt2's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file
from datasets import load_from_disk
from transformers import AutoTokenizer

from nanogpt2.data import TokenLoader, load_meta, prepare_data, tokenizer_fingerprint
from nanogpt2.data.tokenization import DocumentEncoder, build_document_encoder, gpt2_style_bpe_ranks
from nanogpt2.utils import read_jsonl


@pytest.fixture(scope="module")
def tiktoken_gpt2(gpt2_tokenizer_dir):
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    ranks = data_gym_to_mergeable_bpe_ranks(
        str(gpt2_tokenizer_dir / "merges.txt"), str(gpt2_tokenizer_dir / "vocab.json")
    )
    return tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


@pytest.fixture(scope="module")
def fineweb_docs(fineweb_jsonl_path: Path) -> list[str]:
    docs = [record["text"] for record in read_jsonl(fineweb_jsonl_path)]
    return docs + ["Hello world", "a literal <|endoftext|> stays text<|endoftext|>", "  \n\t spaces ", ""]


def tiktoken_stream(encoding, docs: list[str]) -> list[int]:
    stream: list[int] = []
    for doc in docs:
        stream += [encoding.eot_token, *encoding.encode_ordinary(doc)]
    return stream


def test_prepared_ids_identical_to_tiktoken_gpt2(tmp_path, gpt2_tokenizer_dir, tiktoken_gpt2, fineweb_docs,
                                                 monkeypatch):
    from nanogpt2.data import prepare as prepare_module

    monkeypatch.setattr(prepare_module, "MIN_TEXT_BYTES_FOR_WORKERS", 0)  # tokenize in 2 map workers
    source = tmp_path / "fineweb.jsonl"
    source.write_text("".join(json.dumps({"text": d}) + "\n" for d in fineweb_docs), encoding="utf-8")
    out = prepare_data(str(source), tmp_path / "out", tokenizer=str(gpt2_tokenizer_dir), val_tokens=20_000,
                       num_proc=2, verbose=False)
    meta = load_meta(out)
    assert (meta["encoder"], meta["eot_id"], meta["dtype"]) == ("tiktoken", 50256, "uint16")
    streams = []
    for split in ("val", "train"):
        column = load_from_disk(str(out / split)).data.column("input_ids")
        streams += [chunk.flatten().to_numpy() for chunk in column.chunks]
    assert np.concatenate(streams).tolist() == tiktoken_stream(tiktoken_gpt2, fineweb_docs)
    assert tiktoken_gpt2.encode_ordinary("Hello world") == [15496, 995]
    x, y = next(TokenLoader(out, "train", 4, 256, tokenizer=AutoTokenizer.from_pretrained(out / "tokenizer")))
    assert x.shape == (4, 256) and int(x.max()) <= 50256


def test_both_encoders_match_tiktoken_on_real_text(gpt2_tokenizer_dir, tiktoken_gpt2, fineweb_docs):
    tokenizer = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    fast, description = build_document_encoder(tokenizer, "text", fineweb_docs[:20])
    assert fast.path == "tiktoken", description
    assert gpt2_style_bpe_ranks(tokenizer)[0] == tiktoken_gpt2._mergeable_ranks  # tiktoken's own GPT-2 ranks
    general = DocumentEncoder(path="huggingface", eot_id=50256, dtype="uint16", text_column="text",
                              fingerprint="", backend_json=tokenizer.backend_tokenizer.to_str())
    expected = [tiktoken_gpt2.encode_ordinary(doc) for doc in fineweb_docs]
    assert fast.encode_texts(fineweb_docs) == expected
    assert general.encode_texts(fineweb_docs) == expected


def test_fingerprint_is_stable_across_save_and_load(tmp_path, gpt2_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    tokenizer.save_pretrained(tmp_path / "copy")
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(tmp_path / "copy")) == tokenizer_fingerprint(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|pad|>"]})
    assert tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(tmp_path / "copy")


def test_fineweb_text_file_as_one_document(tmp_path, gpt2_tokenizer_dir, tiktoken_gpt2):
    path = shared_file("corpora", "fineweb_edu_sample.txt")
    out = prepare_data(str(path), tmp_path / "out", tokenizer=str(gpt2_tokenizer_dir), val_tokens=0,
                       verbose=False)
    meta = load_meta(out)
    assert meta["documents"] == 1 and meta["splits"]["val"]["tokens"] == 0
    stored = load_from_disk(str(out / "train"))[0]["input_ids"]
    assert stored == tiktoken_stream(tiktoken_gpt2, [path.read_text(encoding="utf-8")])
