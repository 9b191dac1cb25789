"""Conversation data: OASST threads, validation of conversations (errors and counted drops), tokenization
with the chat template (masks exactly transformers'), splits, the output contract and the loader's masks."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import shared_file
from datasets import Dataset, DatasetDict, load_from_disk

import nanogpt2.data.chat as chat
from nanogpt2.cli import main
from nanogpt2.data import (
    IGNORE_INDEX,
    OutputExistsError,
    TokenLoader,
    is_chat_data,
    load_data_tokenizer,
    load_meta,
    prepare_chat_data,
)
from nanogpt2.data.oasst import oasst_threads
from nanogpt2.utils import InputError, iter_jsonl

# The threads of ../shared/sft/oasst_sample.jsonl, by tree, written out from the rules of nanogpt2.data.oasst.
REVERSE = "How do I reverse a list in Python?"
REVERSE_BEST = "Call `my_list.reverse()` to reverse it in place, or use `my_list[::-1]` to get a reversed copy."
FASTER = "Which one is faster?"
THREADS_BEST = {
    "tA": [[REVERSE, REVERSE_BEST, FASTER, "Both are linear in the length of the list; `reverse()` avoids the copy, "
                                           "so it needs less memory and is usually a little faster."]],
    "tB": [["Write a haiku about autumn.",
            "Red leaves drift and fall\nthe cold wind hums through bare trees\nthe year breathes out slow"]],
    "tC": [["¿Cuál es la capital de Francia?", "La capital de Francia es París."]],
    # rank 0 is deleted, rank 2 failed review: the rank-1 reply
    "tD": [["What is the boiling point of water at sea level?",
            "At sea level water boils at 100 °C, which is 212 °F."]],
    "tE": [["Give me a synonym for 'happy'.", "Joyful."]],  # the unanswered follow-up prompt is cut
}  # tF: an unanswered prompt, no thread
THREADS_ALL = THREADS_BEST | {"tA": [
    THREADS_BEST["tA"][0],
    [REVERSE, REVERSE_BEST, FASTER, "`reverse()` is slightly faster because it does not allocate a new list."],
    [REVERSE, "Use reversed()."],
]}


def by_tree(result) -> dict[str, list[list[str]]]:
    threads: dict[str, list[list[str]]] = {}
    for thread in result.threads:
        roles = [m["role"] for m in thread.messages]
        assert roles == ["user", "assistant"] * (len(roles) // 2)  # prompter -> user, ends with the assistant
        threads.setdefault(thread.tree_id, []).append([m["content"] for m in thread.messages])
    return threads


@pytest.mark.needs_shared
@pytest.mark.parametrize("mode, lang", [("best", None), ("all", None), ("best", "en"), ("all", "en")])
def test_oasst_sample_threads(mode, lang):
    result = oasst_threads(iter_jsonl(shared_file("sft", "oasst_sample.jsonl")), mode, lang)
    expected = dict(THREADS_BEST if mode == "best" else THREADS_ALL)
    if lang == "en":
        del expected["tC"]
    assert by_tree(result) == expected
    assert result.dropped == Counter({("tF", "unanswered"): 1} | ({("tC", "other_language"): 1} if lang else {}))
    assert result.excluded == Counter({("tD", "deleted"): 1, ("tD", "failed_review"): 1,
                                       ("tE", "unanswered_prompt"): 1, ("tF", "unanswered_prompt"): 1})


def oasst_row(message_id: str, parent_id: str | None, role: str, text: str, **fields) -> dict:
    tree = fields.pop("tree", message_id.split("-")[0])
    return {"message_id": message_id, "parent_id": parent_id, "role": role, "text": text, "lang": "en",
            "rank": None, "deleted": False, "review_result": True, "message_tree_id": tree} | fields


def test_oasst_rules_ties_unranked_orphans_and_alternation():
    rows = [
        oasst_row("t1-p", None, "prompter", "q"),
        oasst_row("t1-b", "t1-p", "assistant", "tie b", rank=0),
        oasst_row("t1-a", "t1-p", "assistant", "tie a", rank=0),  # equal ranks: the smaller message_id
        oasst_row("t1-c", "t1-p", "assistant", "unranked"),
        oasst_row("t2-p", None, "prompter", "q2"),
        oasst_row("t2-u", "t2-p", "assistant", "unranked", rank=None),
        oasst_row("t2-r", "t2-p", "assistant", "ranked last", rank=3),  # any rank beats no rank
        oasst_row("t3-x", "gone", "assistant", "orphan"),
        oasst_row("t3-y", "t3-x", "prompter", "orphan's child"),
        oasst_row("t4-p", None, "prompter", "q4", deleted=True),
        oasst_row("t4-a", "t4-p", "assistant", "below a deleted root"),
        oasst_row("t5-p", None, "prompter", "q5", lang="de"),
        oasst_row("t5-q", "t5-p", "prompter", "a prompt answering a prompt"),
        oasst_row("t5-a", "t5-q", "assistant", "a5", lang="en"),
    ]
    best = oasst_threads([(f"rows:{i}", row) for i, row in enumerate(rows)], "best", None)
    assert {t.tree_id: [m["content"] for m in t.messages] for t in best.threads} == {
        "t1": ["q", "tie a"], "t2": ["q2", "ranked last"], "t5": ["q5", "a prompt answering a prompt", "a5"]}
    assert [t.location for t in best.threads] == ["rows:0", "rows:4", "rows:11"]
    assert best.excluded == Counter({("t3", "orphan"): 2, ("t4", "deleted"): 2})
    assert best.first == {"orphan": "rows:7"}
    everything = oasst_threads([(f"rows:{i}", row) for i, row in enumerate(rows)], "all", "en")
    assert [[m["content"] for m in t.messages] for t in everything.threads] == [
        ["q", "tie a"], ["q", "tie b"], ["q", "unranked"], ["q2", "ranked last"], ["q2", "unranked"]]
    assert everything.dropped == Counter({("t5", "other_language"): 1})  # the root's language decides
    # t5 alternates wrongly (user, user, assistant): the conversation check drops it, see below.
    assert chat.conversation_problem(best.threads[2].messages, []) == "roles_not_alternating"


@pytest.mark.parametrize("row, message", [
    (oasst_row("t1-p", None, "moderator", "q"), r"rows:0: unknown role 'moderator'"),
    (oasst_row("t1-p", None, "prompter", "q") | {"message_id": None}, r"rows:0: message_id is None"),
])
def test_oasst_bad_rows_are_errors_naming_the_row(row, message):
    with pytest.raises(InputError, match=message):
        oasst_threads([("rows:0", row)], "best", None)
    twice = [(f"rows:{i}", oasst_row("a-p", None, "prompter", "q")) for i in range(2)]
    with pytest.raises(InputError, match="rows:1: message_id 'a-p' repeats the one at rows:0"):
        oasst_threads(twice, "best", None)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


GOOD = [
    [{"role": "system", "content": "Be brief."}, user("the cat sees a red ball"), assistant("a dog reads the sea")],
    [user("my friend finds an apple"), assistant("the teacher builds a long book"), user("and?"),
     assistant("our model walks past the river")],
    [user("a small bird likes some bread"), assistant("the old man writes about the green house")],
]
DROPPED = {
    "empty_message": [user("hello"), assistant("  \n")],
    "roles_not_alternating": [user("one"), user("two"), assistant("three")],
    "not_ending_with_assistant": [user("one"), assistant("two"), user("three")],
    "chat_marker_in_content": [user("say <|end|> please"), assistant("no")],
    "too_long": [user("the cat sees a red ball " * 20), assistant("ok")],
}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def prepare_cli(*args: str) -> int:
    return main(["prepare", "--format", "chat", "--num-proc", "1", *args])


def test_messages_prepared_with_counted_drops(tmp_path, tiny_tokenizer, tiny_tokenizer_dir):
    conversations = [*GOOD, *DROPPED.values(), [user("x <|endoftext|> y"), assistant("z")]]
    source = write_jsonl(tmp_path / "chats.jsonl", [{"messages": m, "id": i} for i, m in enumerate(conversations)])
    out = tmp_path / "out"
    assert prepare_cli("--source", str(source), "--output-dir", str(out), "--tokenizer", str(tiny_tokenizer_dir),
                       "--max-length", "100") == 0
    meta = load_meta(out)
    assert is_chat_data(meta) and meta["content"] == "chat" and meta["source_format"] == "messages"
    assert meta["dropped"] == dict.fromkeys(DROPPED, 1) | {"chat_marker_in_content": 2}
    assert meta["dropped_first"]["roles_not_alternating"] == f"{source}:5"
    assert {split: sum(meta["splits"][split]["dropped"].values()) for split in ("train", "val")} in (
        {"train": 6, "val": 0}, {"train": 5, "val": 1}, {"train": 4, "val": 2})
    assert meta["splits"]["val"]["documents"] >= 1 and meta["documents"] == len(GOOD)
    tokenizer = load_data_tokenizer(out)
    assert tokenizer.chat_template and len(tokenizer) == len(tiny_tokenizer) + 4
    assert len(tiny_tokenizer) == 300  # the caller's tokenizer object is left without chat tokens
    rows = [row for split in ("train", "val") for row in load_from_disk(str(out / split))]
    texts = sorted(tokenizer.decode(row["input_ids"]) for row in rows)
    assert texts == sorted(tokenizer.apply_chat_template(m, tokenize=False) for m in GOOD)
    for split in ("train", "val"):
        assert load_from_disk(str(out / split)).features["assistant_masks"].feature.dtype == "uint8"
    # Same arguments: nothing to do; others: refused.
    assert prepare_chat_data([str(source)], out, tokenizer=tiny_tokenizer, max_length=100, verbose=False) == out
    with pytest.raises(OutputExistsError, match="max_length"):
        prepare_chat_data([str(source)], out, tokenizer=tiny_tokenizer, max_length=101, verbose=False)


@pytest.mark.parametrize("records, message", [
    ([{"messages": [user("hi"), {"role": "human", "content": "x"}]}],
     r"bad\.jsonl:1: message 1 has unknown role 'human'"),
    ([{"messages": GOOD[0]}, {"conversation": GOOD[1]}], r"bad\.jsonl:2: no 'messages' field \(fields: conversation\)"),
    ([{"text": "plain"}], r"bad\.jsonl: no 'messages' column \(columns: text\)"),
    ([{"messages": "hello"}], r"bad\.jsonl:1: 'messages' is str, not a list"),
    ([{"messages": [user("hi"), {"role": "assistant", "content": 3}]}], r"bad\.jsonl:1: message 1 content is int"),
    ([{"messages": [["user", "hi"]]}], r"bad\.jsonl:1: message 0 is not a \{role, content\} object"),
    ([oasst_row("t1-p", None, "user", "q")], r"bad\.jsonl:1: unknown role 'user' \(OpenAssistant roles"),
])
def test_bad_conversations_exit_2_naming_the_row(tmp_path, tiny_tokenizer_dir, capsys, records, message):
    source = write_jsonl(tmp_path / "bad.jsonl", records)
    assert prepare_cli("--source", str(source), "--output-dir", str(tmp_path / "out"),
                       "--tokenizer", str(tiny_tokenizer_dir)) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_flags_of_the_other_format_and_mixed_sources_are_refused(tmp_path, tiny_tokenizer_dir, capsys):
    messages = write_jsonl(tmp_path / "m.jsonl", [{"messages": GOOD[0]}])
    oasst = write_jsonl(tmp_path / "o.jsonl", [oasst_row("t-p", None, "prompter", "q")])
    common = ["--output-dir", str(tmp_path / "out"), "--tokenizer", str(tiny_tokenizer_dir)]
    assert prepare_cli("--source", str(messages), "--val-tokens", "10", *common) == 2
    assert prepare_cli("--source", str(messages), "--lang", "en", *common) == 2
    assert prepare_cli("--source", str(messages), str(oasst), *common) == 2
    assert main(["prepare", "--source", str(messages), "--threads", "all", *common]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[0] == "error: --val-tokens do not apply to --format chat"
    assert "--lang filters OpenAssistant trees" in errors[1]
    assert "mix conversation formats" in errors[2] and errors[3] == "error: --threads do not apply to --format text"


def oasst_sample_rows() -> list[dict]:
    """Tree tA's five messages, plus a two-message tree per letter, and an orphan."""
    rows = [oasst_row("tA-p1", None, "prompter", "q"), oasst_row("tA-a1", "tA-p1", "assistant", "a1", rank=0),
            oasst_row("tA-a2", "tA-p1", "assistant", "a2", rank=1), oasst_row("tA-p2", "tA-a1", "prompter", "q2"),
            oasst_row("tA-a3", "tA-p2", "assistant", "a3"), oasst_row("tZ-a", "nowhere", "assistant", "orphan")]
    for tree in "BCDEFGHIJKLMNOPQRSTUVW":
        rows += [oasst_row(f"t{tree}-p", None, "prompter", f"question {tree}"),
                 oasst_row(f"t{tree}-a", f"t{tree}-p", "assistant", f"answer {tree}")]
    return rows


def test_oasst_file_split_by_tree_with_counts(tmp_path, tiny_tokenizer_dir):
    source = write_jsonl(tmp_path / "oasst.jsonl", oasst_sample_rows())
    out = prepare_chat_data([str(source)], tmp_path / "out", tokenizer=tiny_tokenizer_dir, threads="all",
                            val_fraction=0.3, verbose=False)
    meta = load_meta(out)
    tokenizer = load_data_tokenizer(out)
    texts = {split: [tokenizer.decode(row["input_ids"]) for row in load_from_disk(str(out / split))]
             for split in ("train", "val")}
    tree_a = {split for split, split_texts in texts.items() for text in split_texts if "\nq<|end|>" in text}
    assert len(tree_a) == 1  # tree tA's two threads never straddle the splits
    assert len(texts["train"]) + len(texts["val"]) == 2 + 22 and 1 <= len(texts["val"]) < 12
    excluded = [meta["splits"][split]["messages_excluded"]["orphan"] for split in ("train", "val")]
    assert sorted(excluded) == [0, 1] and meta["messages_excluded"]["orphan"] == 1
    assert meta["threads"] == "all" and meta["source_format"] == "oasst"
    # A vanishing val share still holds out one tree (the one with the smallest hash).
    tiny = prepare_chat_data([str(source)], tmp_path / "tiny", tokenizer=tiny_tokenizer_dir, val_fraction=1e-12,
                             verbose=False)
    assert load_meta(tiny)["splits"]["val"]["documents"] == 1


def test_hub_dataset_uses_its_validation_split(tmp_path, tiny_tokenizer_dir, monkeypatch):
    rows = oasst_sample_rows()
    hub = DatasetDict({"train": Dataset.from_list(rows[:20]), "validation": Dataset.from_list(rows[20:])})
    requested = []
    monkeypatch.setattr(chat.datasets, "load_dataset", lambda repo: requested.append(repo) or hub)
    out = tmp_path / "oasst1-en"
    assert prepare_cli("--source", "OpenAssistant/oasst1", "--threads", "best", "--lang", "en",
                       "--output-dir", str(out), "--tokenizer", str(tiny_tokenizer_dir)) == 0
    meta = load_meta(out)
    assert requested == ["OpenAssistant/oasst1"] and meta["recipe"]["repo"] == "OpenAssistant/oasst1"
    assert meta["splits"]["val"]["documents"] == 15  # the validation split's trees, nothing else
    assert meta["splits"]["train"]["documents"] == 1 + 7 and meta["messages_excluded"]["orphan"] == 1
    monkeypatch.setattr(chat.datasets, "load_dataset", lambda repo: DatasetDict({"train_sft": hub["train"]}))
    with pytest.raises(InputError, match=r"no split 'train' \(splits: train_sft\)"):
        prepare_chat_data("some/dataset", tmp_path / "other", tokenizer=tiny_tokenizer_dir, verbose=False)


def test_interrupted_preparation_leaves_nothing(tmp_path, tiny_tokenizer_dir, monkeypatch):
    source = write_jsonl(tmp_path / "chats.jsonl", [{"messages": m} for m in GOOD])

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(chat, "save_split", fail)
    with pytest.raises(KeyboardInterrupt):
        prepare_chat_data([str(source)], tmp_path / "out", tokenizer=tiny_tokenizer_dir, verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chats.jsonl"]


def masked_text(tokenizer, ids: list[int], masks: list[int]) -> str:
    return tokenizer.decode([token for token, mask in zip(ids, masks, strict=True) if mask])


def assistant_text(messages: list[dict]) -> str:
    return "".join(m["content"] + "<|end|>" for m in messages if m["role"] == "assistant")


@pytest.mark.needs_shared
def test_masks_equal_apply_chat_template_on_the_shared_samples(tmp_path, gpt2_tokenizer_dir):
    for name in ("conversations_sample.jsonl", "oasst_sample.jsonl"):
        source = shared_file("sft", name)
        out = prepare_chat_data([str(source)], tmp_path / name, tokenizer=gpt2_tokenizer_dir, threads="all",
                                verbose=False)
        tokenizer = load_data_tokenizer(out)
        assert tokenizer.convert_tokens_to_ids(["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]) == [
            50257, 50258, 50259, 50260]
        conversations, _, _ = chat.read_conversations([str(source)], threads="all", lang=None,
                                                      train_split="train", val_split="validation")
        expected = {}
        for conversation in conversations:
            encoded = tokenizer.apply_chat_template(conversation.messages, tokenize=True, return_dict=True,
                                                    return_assistant_tokens_mask=True)
            expected[tuple(encoded["input_ids"])] = (encoded["assistant_masks"], conversation.messages)
        rows = [row for split in ("train", "val") for row in load_from_disk(str(out / split))]
        assert len(rows) == len(expected) == load_meta(out)["documents"] and load_meta(out)["dtype"] == "uint16"
        for row in rows:
            masks, messages = expected[tuple(row["input_ids"])]
            assert row["assistant_masks"] == masks
            assert masked_text(tokenizer, row["input_ids"], row["assistant_masks"]) == assistant_text(messages)
        # The loader: targets outside the assistant's tokens are ignored; the rest decode to the replies.
        tokens = load_meta(out)["splits"]["train"]["tokens"]
        x, y = next(TokenLoader(out, "train", 1, tokens - 1, tokenizer=tokenizer))
        train = load_from_disk(str(out / "train"))
        assert tokenizer.decode(y[y != IGNORE_INDEX]) == "".join(
            assistant_text(expected[tuple(row["input_ids"])][1]) for row in train)
        assert torch.equal(x[0], torch.tensor([t for row in train for t in row["input_ids"]][:-1]))


def test_parquet_source_and_nothing_left(tmp_path, tiny_tokenizer_dir):
    source = tmp_path / "chats.parquet"
    pq.write_table(pa.Table.from_pylist([{"messages": m} for m in GOOD]), source)
    out = prepare_chat_data([str(source)], tmp_path / "out", tokenizer=tiny_tokenizer_dir, verbose=False)
    assert load_meta(out)["documents"] == len(GOOD)
    with pytest.raises(InputError, match=r"no train conversation left .*too_long 3"):
        prepare_chat_data([str(source)], tmp_path / "short", tokenizer=tiny_tokenizer_dir, max_length=10,
                          verbose=False)
    assert not (tmp_path / "short").exists()
