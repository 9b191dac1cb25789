"""HellaSwag loading (original jsonl format, errors naming file and line), the two prompt styles, tokenization."""

import json

import datasets
import pytest
from _hellaswag_helpers import make_examples, write_jsonl
from transformers import AutoTokenizer

from nanogpt2.evaluation import load_hellaswag
from nanogpt2.evaluation.hellaswag import build_prompt, lm_eval_preprocess, tokenize_requests
from nanogpt2.utils import InputError


def test_loads_the_original_format_and_limit(tmp_path):
    rows = make_examples(7)
    rows[1]["label"] = "2"  # the Hub copy stores labels as strings
    path = write_jsonl(tmp_path / "val.jsonl", rows)
    examples = load_hellaswag(path)
    assert len(examples) == 7
    assert examples[0]["endings"] == rows[0]["endings"] and examples[0]["ctx"] == rows[0]["ctx"]
    assert examples[1]["label"] == 2 and all(type(e["label"]) is int for e in examples)
    assert examples[3]["source_id"] == "fixture~3"  # other fields are kept
    assert [e["ind"] for e in load_hellaswag(path, limit=3)] == [0, 1, 2]


BAD_ROWS = {
    "not-json": "{not json",
    "not-an-object": '["a", "list"]',
    "missing-fields": json.dumps({"ctx": "a", "endings": ["x", "y"], "label": 0}),
    "no-endings": json.dumps({**make_examples(1)[0], "endings": []}),
    "endings-not-strings": json.dumps({**make_examples(1)[0], "endings": ["a", 3, "b", "c"]}),
    "empty-ending": json.dumps({**make_examples(1)[0], "endings": ["a", " ", "b", "c"]}),
    "label-out-of-range": json.dumps({**make_examples(1)[0], "label": 4}),
    "label-not-integer": json.dumps({**make_examples(1)[0], "label": True}),
}


@pytest.mark.parametrize("bad_line", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_malformed_rows_name_the_file_and_line(tmp_path, bad_line):
    lines = [json.dumps(row) for row in make_examples(3)]
    lines.insert(2, bad_line)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as error:
        load_hellaswag(path)
    assert str(error.value).startswith(f"{path}:3: ") and "\n" not in str(error.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl"):
        load_hellaswag(tmp_path / "nope.jsonl")


def test_hub_unreachable_is_an_input_error(monkeypatch):
    def offline(*args, **kwargs):  # what datasets raises offline (a cached copy would load instead)
        raise ConnectionError("Couldn't reach 'Rowan/hellaswag' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError, match="Rowan/hellaswag"):
        load_hellaswag(None, limit=2)


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
    # " [title]" becomes ". ", other bracketed markers vanish, double spaces collapse, ctx_b is capitalized
    # with str.capitalize (rest lower-cased). The harness strips before removing markers, so an ending that
    # starts with one keeps a leading space (as in real WikiHow rows).
    assert prompt.context == "Home and Garden: How to grow basil. Pick a sunny spot. The pot"
    assert prompt.endings == [" is watered daily. Keep it moist.", "falls."]
    assert prompt.continuations == ["  is watered daily. Keep it moist.", " falls."]
    assert lm_eval_preprocess("  a [x] b  ") == "a b"
    # A context that ends in a space after preprocessing: the space moves into every continuation.
    trailing = build_prompt({**example, "ctx_b": "the end [title]"}, "lm-eval")
    assert trailing.context.endswith("The end.")
    assert trailing.continuations == ["   is watered daily. Keep it moist.", "  falls."]


def test_unknown_style_is_an_input_error():
    with pytest.raises(InputError, match="gpt3"):
        build_prompt(make_examples(1)[0], "gpt3")


def test_tokenization_nanogpt_and_lm_eval_rules(tiny_tokenizer):
    examples = make_examples(6)
    encode = lambda text: tiny_tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731

    nanogpt = tokenize_requests(examples, tiny_tokenizer, style="nanogpt", max_length=None)
    assert len(nanogpt) == 24
    for req in nanogpt:
        example = examples[req.example]
        ending_ids = encode(" " + example["endings"][req.ending])
        assert req.tokens == encode(example["ctx"]) + ending_ids
        assert req.n_ending_tokens == len(ending_ids)
        assert req.n_chars == len(example["endings"][req.ending])

    for req in tokenize_requests(examples, tiny_tokenizer, style="lm-eval", max_length=None):
        prompt = build_prompt(examples[req.example], "lm-eval")
        whole = encode(prompt.context + prompt.continuations[req.ending])
        assert req.tokens == whole
        assert req.n_ending_tokens == len(whole) - len(encode(prompt.context))
        assert req.n_chars == len(prompt.endings[req.ending])


def test_empty_context_starts_from_the_end_of_text_token(tiny_tokenizer):
    example = {**make_examples(1)[0], "ctx": ""}
    requests = tokenize_requests([example], tiny_tokenizer, style="nanogpt", max_length=None)
    assert all(r.tokens[0] == tiny_tokenizer.eos_token_id and len(r.tokens) == r.n_ending_tokens + 1
               for r in requests)


def test_left_truncation_keeps_the_ending(tiny_tokenizer):
    examples = make_examples(4)
    full = tokenize_requests(examples, tiny_tokenizer, style="nanogpt", max_length=None)
    max_length = max(r.n_ending_tokens for r in full) + 2
    assert any(len(r.tokens) > max_length + 1 for r in full)
    cut = tokenize_requests(examples, tiny_tokenizer, style="nanogpt", max_length=max_length)
    for a, b in zip(full, cut, strict=True):
        assert b.tokens == a.tokens[-(max_length + 1):] and b.n_ending_tokens == a.n_ending_tokens
    with pytest.raises(InputError, match="maximum length 2"):
        tokenize_requests(examples, tiny_tokenizer, style="nanogpt", max_length=2)


def test_real_gpt2_tokens_match_build_nanogpt(gpt2_tokenizer_dir, hellaswag_val_path):
    tokenizer = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    examples = load_hellaswag(hellaswag_val_path, limit=20)
    assert examples[0]["ctx"].startswith("Pole vault is a sport")
    for req in tokenize_requests(examples, tokenizer, style="nanogpt", max_length=1024):
        example = examples[req.example]
        assert req.tokens == tokenizer.encode(example["ctx"]) + tokenizer.encode(" " + example["endings"][req.ending])
    lm_eval = tokenize_requests(examples, tokenizer, style="lm-eval", max_length=1024)
    assert all(r.n_ending_tokens > 0 for r in lm_eval)
