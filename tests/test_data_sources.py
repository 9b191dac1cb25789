"""Bad input for prepare_data: each error names the file and record; null text is skipped and counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT
from test_data_prepare import mixed_documents, write_jsonl

from nanogpt2.cli import main
from nanogpt2.data import SourceError, load_meta, prepare_data
from nanogpt2.data.sources import SkippedRecords, local_text_batches, resolve_local_files
from nanogpt2.utils import InputError


def read_all(files: list[Path], text_column: str = "text") -> tuple[list[str], SkippedRecords]:
    skipped = SkippedRecords()
    texts: list[str] = []
    for batch in local_text_batches(files, text_column, "file", skipped, batch_size=2):
        texts += batch.to_pylist() if isinstance(batch, pa.Array) else batch
    return texts, skipped


def test_missing_paths_empty_folders_and_unmatched_globs(tmp_path):
    with pytest.raises(SourceError, match=r"source '.*nowhere.jsonl' does not exist"):
        resolve_local_files([str(tmp_path / "nowhere.jsonl")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="folder .*empty' contains no"):
        resolve_local_files([str(tmp_path / "empty")])
    with pytest.raises(SourceError, match=r"glob .*\*\.parquet' matches no"):
        resolve_local_files([str(tmp_path / "*.parquet")])
    (tmp_path / "notes.csv").write_text("a,b")
    with pytest.raises(SourceError, match="notes.csv': unsupported file type"):
        resolve_local_files([str(tmp_path / "notes.csv")])
    with pytest.raises(SourceError, match="cannot be combined"):
        resolve_local_files(["fineweb-edu", str(tmp_path)])


def test_folders_and_globs_expand_sorted_and_deduplicated(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.jsonl", "a.txt", "sub/c.parquet", "skip.md"):
        (tmp_path / name).write_text("x")
    files = resolve_local_files([str(tmp_path), str(tmp_path / "*.txt")])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.txt", "b.jsonl", "sub/c.parquet"]


def test_empty_sources_are_an_error(tmp_path, tiny_tokenizer):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(SourceError, match="contain no documents"):
        prepare_data(str(tmp_path / "empty.jsonl"), tmp_path / "out", tokenizer=tiny_tokenizer, verbose=False)
    assert not (tmp_path / "out").exists()


def test_jsonl_errors_name_file_and_line(tmp_path):
    cases = {
        "missing.jsonl": ('{"text": "a"}\n{"body": "b"}\n', r"missing.jsonl:2: no 'text' field \(fields: body\)"),
        "number.jsonl": ('{"text": "a"}\n{"text": "b"}\n{"text": 7}\n', r"number.jsonl:3: field 'text' is int"),
        "broken.jsonl": ('{"text": "a"}\n{"text": "b\n', r"broken.jsonl:2: invalid JSON"),
        "array.jsonl": ('["text"]\n', r"array.jsonl:1: expected a JSON object"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(InputError, match=message):  # SourceError, or utils.iter_jsonl's InputError
            read_all([tmp_path / name])
    (tmp_path / "latin1.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(InputError, match="latin1.jsonl:2: not valid UTF-8"):
        read_all([tmp_path / "latin1.jsonl"])


def test_null_text_is_skipped_and_counted_in_meta(tmp_path, tiny_tokenizer):
    docs = mixed_documents(30, seed=6)
    write_jsonl(tmp_path / "a.jsonl", [docs[0], None, *docs[1:20], None])
    table = pa.table({"content": pa.array([*docs[20:], None], type=pa.large_string())})
    pq.write_table(table, tmp_path / "b.parquet")
    texts, skipped = read_all([tmp_path / "a.jsonl"])
    assert texts == docs[:20] and skipped.null_text == 2 and skipped.first == f"{tmp_path / 'a.jsonl'}:2"
    # A parquet file with another column name: --text-column selects it.
    with pytest.raises(SourceError, match=r"b.parquet: no column 'text' \(columns: content\)"):
        read_all([tmp_path / "b.parquet"])
    texts, skipped = read_all([tmp_path / "b.parquet"], text_column="content")
    assert texts == docs[20:] and skipped.null_text == 1 and skipped.first.endswith("b.parquet: row 10")

    out = prepare_data(str(tmp_path / "a.jsonl"), tmp_path / "out", tokenizer=tiny_tokenizer, val_tokens=10,
                       verbose=False)
    meta = load_meta(out)
    assert meta["skipped_null_text"] == 2 and meta["documents"] == 20
    assert meta["skipped_null_text_first"] == f"{tmp_path / 'a.jsonl'}:2"


def test_parquet_non_string_column_is_an_error(tmp_path):
    pq.write_table(pa.table({"text": [1, 2, 3]}), tmp_path / "ints.parquet")
    with pytest.raises(SourceError, match="ints.parquet: column 'text' has type int64, not a string"):
        read_all([tmp_path / "ints.parquet"])
    (tmp_path / "fake.parquet").write_bytes(b"not parquet")
    with pytest.raises(SourceError, match="fake.parquet: not a readable parquet file"):
        read_all([tmp_path / "fake.parquet"])


def test_undecodable_txt_names_file_and_byte(tmp_path):
    (tmp_path / "good.txt").write_text("fine text", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes("héllo".encode() + b" \xff\xfe world")
    with pytest.raises(SourceError, match=r"bad.txt: not valid UTF-8 at byte 7"):
        read_all([tmp_path / "good.txt", tmp_path / "bad.txt"])


def test_fast_jsonl_reader_agrees_with_line_reader(tmp_path):
    docs = mixed_documents(50, seed=7)
    docs[3] = 'quotes " and \\ backslashes \u2028 separators \x00 nul'
    lines = [json.dumps({"text": d, "meta": {"n": i}}) for i, d in enumerate(docs)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    assert read_all([tmp_path / "d.jsonl"])[0] == docs
    # By default batches are lists of at most batch_size str, whatever the reader.
    (tmp_path / "t.txt").write_text("\n\n".join(docs[:7]))
    batches = list(local_text_batches([tmp_path / "d.jsonl", tmp_path / "t.txt"], "text", "paragraph",
                                      SkippedRecords(), batch_size=4))
    assert all(isinstance(b, list) and 0 < len(b) <= 4 and all(isinstance(t, str) for t in b) for b in batches)
    assert [t for b in batches for t in b] == docs + [d.strip("\n") for d in docs[:7]]
    # A null half-way switches to the line reader without repeating or losing documents.
    lines.insert(30, json.dumps({"text": None}))
    (tmp_path / "n.jsonl").write_text("\n".join(lines) + "\n")
    texts, skipped = read_all([tmp_path / "n.jsonl"])
    assert texts == docs and skipped.null_text == 1 and skipped.first.endswith("n.jsonl:31")


@pytest.mark.parametrize("streaming", [False, True])
def test_fineweb_edu_source_shares_the_local_pipeline(tmp_path, tiny_tokenizer, monkeypatch, streaming):
    """The Hub source (replaced by an in-memory dataset: no Hub here) goes through the same pipeline."""
    import datasets

    docs = mixed_documents(60, seed=8)
    calls = []

    def fake_load_dataset(path, name=None, split=None, streaming=False):
        calls.append((path, name, split, streaming))
        dataset = datasets.Dataset.from_dict({"text": [*docs[:10], None, *docs[10:]], "score": [1.0] * 61})
        return dataset.to_iterable_dataset() if streaming else dataset

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    out = prepare_data("fineweb-edu", tmp_path / "out", tokenizer=tiny_tokenizer, subset="sample-100BT", val_tokens=50,
                       max_docs=40, streaming=streaming, verbose=False)
    meta = load_meta(out)
    assert calls == [("HuggingFaceFW/fineweb-edu", "sample-100BT", "train", streaming)]
    assert (meta["source"], meta["subset"], meta["documents"], meta["skipped_null_text"]) == (
        "fineweb-edu", "sample-100BT", 40, 1)
    local = prepare_data(str(write_jsonl(tmp_path / "d.jsonl", docs[:40])), tmp_path / "local",
                         tokenizer=tiny_tokenizer, val_tokens=50, verbose=False)
    for split in ("train", "val"):
        assert load_meta(local)["splits"][split]["tokens"] == meta["splits"][split]["tokens"]


def test_prepare_command_reports_bad_input_and_prepares_data(tmp_path, tiny_tokenizer_dir, capsys):
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    common = ["--tokenizer", str(tiny_tokenizer_dir), "--num-proc", "1", "--val-tokens", "20"]
    assert main(["prepare", "--source", str(tmp_path / "bad.jsonl"), "--output-dir", str(tmp_path / "o"), *common]) == 2
    assert f"{tmp_path / 'bad.jsonl'}:1:" in capsys.readouterr().err
    write_jsonl(tmp_path / "good.jsonl", mixed_documents(30, seed=9))
    argv = ["prepare", "--source", str(tmp_path / "good.jsonl"), "--output-dir", str(tmp_path / "o"), *common]
    assert main(argv) == 0 and load_meta(tmp_path / "o")["documents"] == 30
    meta_mtime = (tmp_path / "o" / "meta.json").stat().st_mtime_ns
    assert main(argv) == 0 and (tmp_path / "o" / "meta.json").stat().st_mtime_ns == meta_mtime  # nothing to do
    capsys.readouterr()
    assert main([*argv, "--max-docs", "5"]) == 2
    assert "max_docs" in capsys.readouterr().err  # names what differs
    assert main([*argv, "--val-tokens", "-1"]) == 2


def test_prepare_script_on_a_missing_source_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "prepare_data.py"), "--source", str(missing),
                           "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert str(missing) in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
