"""HellaSwag loading (original jsonl format, clear errors), the two prompt styles, tokenization rules."""

import json

import pytest
from _hellaswag_helpers import make_examples, train_tiny_tokenizer, write_jsonl
from transformers import AutoTokenizer

from nanogpt2.evaluation import Prompt, build_prompt, lm_eval_preprocess, load_hellaswag, tokenize_requests
from nanogpt2.evaluation.hellaswag_tokenize import _move_trailing_spaces


def test_loads_the_original_format_and_limit(tmp_path):
    rows = make_examples(7)
    rows[1]["label"] = "2"  # the Hub copy stores labels as strings
    path = write_jsonl(tmp_path / "val.jsonl", rows)
    examples = load_hellaswag(path)
    assert len(examples) == 7
    assert examples[0]["endings"] == rows[0]["endings"] and examples[0]["ctx"] == rows[0]["ctx"]
    assert examples[1]["label"] == 2 and all(isinstance(e["label"], int) for e in examples)
    assert examples[3]["source_id"] == "fixture~3"  # other fields are kept
    assert [e["ind"] for e in load_hellaswag(path, limit=3)] == [0, 1, 2]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a", "list"]', "expected a JSON object"),
        (json.dumps({"ctx": "a", "endings": ["x", "y"], "label": 0}), r"missing field\(s\) \['ctx_a'"),
        ("LABEL_OUT_OF_RANGE", "field 'label' must be an integer in \\[0, 4\\), got 4"),
        ("ENDINGS_NOT_STRINGS", "field 'endings' must be a list"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, bad_line, message):
    rows = make_examples(3)
    lines = [json.dumps(r) for r in rows]
    if bad_line == "LABEL_OUT_OF_RANGE":
        bad_line = json.dumps({**rows[0], "label": 4})
    elif bad_line == "ENDINGS_NOT_STRINGS":
        bad_line = json.dumps({**rows[0], "endings": ["a", 3, "b", "c"]})
    lines.insert(2, bad_line)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad\.jsonl:3: {message}"):
        load_hellaswag(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_hellaswag(tmp_path / "nope.jsonl")


def test_nanogpt_style_is_ctx_then_space_ending():
    example = make_examples(3)[2]
    prompt = build_prompt(example, "nanogpt")
    assert prompt.context == example["ctx"]
    assert prompt.continuations == [" " + e for e in example["endings"]]
    assert prompt.endings == example["endings"]


def test_lm_eval_style_follows_the_harness_preprocessing():
    example = {
        "activity_label": "Home and Garden",
        "ctx_a": "[header] How to grow basil [title] Pick a sunny spot.",
        "ctx_b": "tHE pot",
        "endings": ["[step] is watered  daily. [substeps] Keep it moist.", "falls."],
        "label": 0,
    }
    prompt = build_prompt(example, "lm-eval")
    # " [title]" becomes ". ", other bracketed markers vanish, double spaces collapse, ctx_b is
    # capitalized with str.capitalize (rest lower-cased). The harness strips before removing markers,
    # so an ending that starts with one keeps a leading space (as in real WikiHow rows).
    assert prompt.context == "Home and Garden: How to grow basil. Pick a sunny spot. The pot"
    assert prompt.endings == [" is watered daily. Keep it moist.", "falls."]
    assert prompt.continuations == ["  is watered daily. Keep it moist.", " falls."]
    assert lm_eval_preprocess("  a [x] b  ") == "a b"


def test_unknown_style_is_rejected():
    with pytest.raises(ValueError, match="unknown HellaSwag prompt style 'gpt3'"):
        build_prompt(make_examples(1)[0], "gpt3")


def test_tokenization_nanogpt_and_lm_eval_rules():
    examples = make_examples(6)
    tokenizer = train_tiny_tokenizer(examples)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731

    nanogpt = tokenize_requests(examples, tokenizer, style="nanogpt", max_length=None)
    assert len(nanogpt) == 24
    for req in nanogpt:
        example = examples[req.example]
        ending_ids = encode(" " + example["endings"][req.ending])
        assert req.tokens == encode(example["ctx"]) + ending_ids
        assert req.n_ending_tokens == len(ending_ids)
        assert req.n_chars == len(example["endings"][req.ending])

    for req in tokenize_requests(examples, tokenizer, style="lm-eval", max_length=None):
        prompt = build_prompt(examples[req.example], "lm-eval")
        whole = encode(prompt.context + prompt.continuations[req.ending])
        assert req.tokens == whole
        assert req.n_ending_tokens == len(whole) - len(encode(prompt.context))
        assert req.n_chars == len(prompt.endings[req.ending])


def test_trailing_context_spaces_move_into_the_continuation():
    # lm-eval's rule; HellaSwag's preprocessing already strips the context, so test the rule itself.
    moved = _move_trailing_spaces(Prompt(context="Go  ", continuations=[" up", " on"], endings=["up", "on"]))
    assert moved == Prompt(context="Go", continuations=["   up", "   on"], endings=["up", "on"])


def test_left_truncation_keeps_the_ending():
    examples = make_examples(4)
    tokenizer = train_tiny_tokenizer(examples)
    full = tokenize_requests(examples, tokenizer, style="nanogpt", max_length=None)
    max_length = max(r.n_ending_tokens for r in full) + 2
    assert any(len(r.tokens) > max_length + 1 for r in full)
    cut = tokenize_requests(examples, tokenizer, style="nanogpt", max_length=max_length)
    for a, b in zip(full, cut, strict=True):
        assert b.tokens == a.tokens[-(max_length + 1) :] and b.n_ending_tokens == a.n_ending_tokens
    with pytest.raises(ValueError, match="more than the model's maximum length 2"):
        tokenize_requests(examples, tokenizer, style="nanogpt", max_length=2)


def test_real_gpt2_tokens_match_build_nanogpt(gpt2_tokenizer_dir, hellaswag_val_path):
    tokenizer = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    examples = load_hellaswag(hellaswag_val_path, limit=20)
    assert examples[0]["ctx"].startswith("Pole vault is a sport")
    requests = tokenize_requests(examples, tokenizer, style="nanogpt", max_length=1024)
    for req in requests:
        example = examples[req.example]
        ctx_ids = tokenizer.encode(example["ctx"])
        ending_ids = tokenizer.encode(" " + example["endings"][req.ending])
        assert req.tokens == ctx_ids + ending_ids
    lm_eval = tokenize_requests(examples, tokenizer, style="lm-eval", max_length=1024)
    assert all(r.n_ending_tokens > 0 for r in lm_eval)
