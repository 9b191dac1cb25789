"""The batched HellaSwag evaluator equals the plain one-ending-at-a-time computation."""

import pytest
import torch
from _hellaswag_helpers import make_examples, plain_scores, predictions, tiny_gpt2, train_tiny_tokenizer
from transformers import AutoTokenizer
from transformers.modeling_outputs import CausalLMOutput

from nanogpt2.evaluation import (
    evaluate_hellaswag,
    load_hellaswag,
    load_hellaswag_metric,
    score_hellaswag,
    tokenize_requests,
)
from nanogpt2.evaluation.hellaswag_packed import pack_examples, packed_attention_mask, packed_length
from nanogpt2.evaluation.hellaswag_scoring import logits_mode, plan_batches, supports_shared_context
from nanogpt2.modeling import convert_from_hf_gpt2


@pytest.fixture(scope="module")
def fixture_setup():
    examples = make_examples(24)
    tokenizer = train_tiny_tokenizer(examples)
    return examples, tokenizer, tiny_gpt2(len(tokenizer))


@pytest.fixture(scope="module")
def fixture_plain(fixture_setup):
    """The plain scores of the fixture model, per style (computed once)."""
    examples, tokenizer, model = fixture_setup
    return {style: plain_scores(model, tokenizer, examples, style) for style in ("nanogpt", "lm-eval")}


def assert_same_scores(batched, plain):
    assert batched.ending_tokens == plain.ending_tokens
    assert batched.ending_chars == plain.ending_chars
    assert batched.labels == plain.labels
    got, want = torch.tensor(batched.ending_logprobs), torch.tensor(plain.ending_logprobs)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0, check_dtype=False)
    assert predictions(batched) == predictions(plain)


@pytest.mark.parametrize("share_context", [True, False])
@pytest.mark.parametrize("style", ["nanogpt", "lm-eval"])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batched_equals_plain_on_fixture(fixture_setup, fixture_plain, style, batch_size, share_context):
    examples, tokenizer, model = fixture_setup
    batched = score_hellaswag(
        model, tokenizer, examples, style=style, batch_size=batch_size, progress=False, share_context=share_context
    )
    assert_same_scores(batched, fixture_plain[style])


def test_plan_batches_shares_contexts_and_falls_back_to_rows(fixture_setup):
    examples, tokenizer, _ = fixture_setup
    requests = tokenize_requests(examples, tokenizer, style="nanogpt", max_length=None)
    shared = plan_batches(requests, 5, share_context=True)
    assert {batch.kind for batch in shared} == {"packed"}
    assert sorted(r for batch in shared for r in batch.requests) == list(range(len(requests)))
    assert all(sum(batch.examples_per_row) * 4 == len(batch.requests) for batch in shared)
    assert all(sum(batch.examples_per_row) >= 5 for batch in shared[:-1])
    rows_only = plan_batches(requests, 5, share_context=False)
    assert [len(batch.requests) for batch in rows_only if batch.kind == "rows"] == [20, 20, 20, 20, 16]
    # Context cut differently for each ending (left truncation): the example is scored row by row.
    cut = tokenize_requests(examples[:1], tokenizer, style="nanogpt", max_length=len(requests[0].tokens) - 2)
    assert len({r.n_ending_tokens for r in cut}) > 1
    assert [batch.kind for batch in plan_batches(cut, 5, share_context=True)] == ["rows"]


def test_evaluate_returns_the_metric_of_the_scores(fixture_setup, fixture_plain):
    examples, tokenizer, model = fixture_setup
    result = evaluate_hellaswag(model, tokenizer, examples, style="lm-eval", batch_size=8, progress=False)
    expected = load_hellaswag_metric().compute(**fixture_plain["lm-eval"].metric_inputs())
    assert result == expected
    assert set(result) == {"acc", "acc_norm", "acc_norm_chars", "n"} and result["n"] == 24
    assert isinstance(result["n"], int) and all(isinstance(result[k], float) for k in ("acc", "acc_norm"))


def test_restores_training_mode_and_builds_no_graph(fixture_setup):
    examples, tokenizer, model = fixture_setup
    model.train()
    scores = score_hellaswag(model, tokenizer, examples[:4], progress=False)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    score_hellaswag(model, tokenizer, examples[:4], progress=False)
    assert not model.training
    assert len(scores.ending_logprobs) == 4


def test_left_truncation_to_the_model_length():
    examples = make_examples(12, seed=1)
    tokenizer = train_tiny_tokenizer(examples)
    requests = tokenize_requests(examples, tokenizer, style="nanogpt", max_length=None)
    n_positions = max(r.n_ending_tokens for r in requests) + 3
    assert sum(len(r.tokens) > n_positions + 1 for r in requests) > 10  # many contexts get cut
    model = tiny_gpt2(len(tokenizer), n_positions=n_positions)
    batched = score_hellaswag(model, tokenizer, examples, style="nanogpt", batch_size=5, progress=False)
    assert_same_scores(batched, plain_scores(model, tokenizer, examples, "nanogpt"))


@pytest.mark.parametrize("convert", [False, True], ids=["transformers-gpt2", "nanogpt2"])
def test_packed_rows_longer_than_the_model(convert):
    # No example is truncated, but an example's context plus all its endings (one packed row) is longer
    # than n_positions: the row holds more tokens than the model has positions, which must still be exact.
    examples = make_examples(12, seed=2)
    tokenizer = train_tiny_tokenizer(examples)
    requests = tokenize_requests(examples, tokenizer, style="nanogpt", max_length=None)
    n_positions = max(len(r.tokens) for r in requests) - 1
    ctx = [len(r.tokens) - r.n_ending_tokens for r in requests]
    assert max(ctx) + max(r.n_ending_tokens for r in requests) > n_positions
    assert max(packed_length(requests[k : k + 4]) for k in range(0, len(requests), 4)) > n_positions
    model = tiny_gpt2(len(tokenizer), n_positions=n_positions)
    model = convert_from_hf_gpt2(model) if convert else model
    assert supports_shared_context(model.eval(), torch.device("cpu"))
    batched = score_hellaswag(model, tokenizer, examples, style="nanogpt", batch_size=12, progress=False)
    assert_same_scores(batched, plain_scores(model, tokenizer, examples, "nanogpt"))


def test_model_without_logits_to_keep(fixture_setup, fixture_plain):
    examples, tokenizer, model = fixture_setup

    class PlainForward(torch.nn.Module):  # a causal LM whose forward knows only ids and mask
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, attention_mask=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    assert logits_mode(PlainForward(model).eval(), torch.device("cpu")) == "all"
    assert not supports_shared_context(PlainForward(model), torch.device("cpu"))
    batched = score_hellaswag(PlainForward(model), tokenizer, examples, batch_size=6, progress=False)
    assert_same_scores(batched, fixture_plain["nanogpt"])


def test_old_style_logits_to_keep_falls_back_to_the_last_positions(fixture_setup, fixture_plain):
    examples, tokenizer, model = fixture_setup

    class OldStyle(torch.nn.Module):  # indexes `hidden[:, logits_to_keep, :]`, as older models did
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, attention_mask=None, logits_to_keep=0):
            hidden = self.inner.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            index = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            return CausalLMOutput(logits=self.inner.lm_head(hidden[:, index, :]))

    old_style = OldStyle(model).eval()
    assert logits_mode(old_style, torch.device("cpu")) == "last"
    batched = score_hellaswag(old_style, tokenizer, examples, batch_size=5, progress=False)
    assert_same_scores(batched, fixture_plain["nanogpt"])


def test_logits_modes(fixture_setup):
    _, _, model = fixture_setup
    model.eval()  # the probe compares two forward passes: no dropout
    assert logits_mode(model, torch.device("cpu")) == "positions"  # transformers' GPT-2 slices by mask
    assert logits_mode(torch.compile(model, backend="eager"), torch.device("cpu")) == "last"


def test_torch_compiled_model(fixture_setup, fixture_plain):
    examples, tokenizer, model = fixture_setup
    compiled = torch.compile(model, backend="eager", dynamic=True)
    batched = score_hellaswag(compiled, tokenizer, examples, batch_size=8, progress=False)
    assert_same_scores(batched, fixture_plain["nanogpt"])


def test_accelerator_bf16_autocast_runs_close_to_fp32(fixture_setup, fixture_plain):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    examples, tokenizer, model = fixture_setup
    AcceleratorState._reset_state(reset_partial_state=True)  # an earlier test's Accelerator is a singleton
    accelerator = Accelerator(mixed_precision="bf16", cpu=True)
    assert accelerator.mixed_precision == "bf16"
    bf16 = score_hellaswag(model, tokenizer, examples, batch_size=8, accelerator=accelerator, progress=False)
    fp32 = fixture_plain["nanogpt"]
    diff = (torch.tensor(bf16.ending_logprobs) - torch.tensor(fp32.ending_logprobs)).abs()
    assert 0 < diff.max() < 0.5  # autocast was on (results differ) and bf16 is still close
    assert all(p.dtype == torch.float32 for p in model.parameters())
    AcceleratorState._reset_state(reset_partial_state=True)


def test_real_examples_batched_equals_plain(gpt2_tokenizer_dir, hellaswag_val_path):
    tokenizer = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    examples = load_hellaswag(hellaswag_val_path, limit=24)
    model = tiny_gpt2(len(tokenizer), n_positions=1024, seed=3)
    for style in ("nanogpt", "lm-eval"):
        plain = plain_scores(model, tokenizer, examples, style)
        for share_context in (True, False):
            batched = score_hellaswag(
                model, tokenizer, examples, style=style, batch_size=16, progress=False, share_context=share_context
            )
            assert_same_scores(batched, plain)


def test_nanogpt2_model(fixture_setup):
    modeling = pytest.importorskip("nanogpt2.modeling", reason="nanogpt2.modeling is not importable")
    examples, tokenizer, _ = fixture_setup
    torch.manual_seed(0)
    config = modeling.NanoGPT2Config(
        vocab_size=len(tokenizer) + 13,  # padded embedding rows, never predicted
        tokenizer_vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=48,
        n_layer=2,
        n_head=4,
    )
    model = modeling.NanoGPT2LMHeadModel(config).eval()
    assert logits_mode(model, torch.device("cpu")) == "positions"
    assert supports_shared_context(model, torch.device("cpu"))
    plain = plain_scores(model, tokenizer, examples, "nanogpt")
    for share_context in (True, False):
        batched = score_hellaswag(model, tokenizer, examples, batch_size=7, progress=False, share_context=share_context)
        assert_same_scores(batched, plain)


def test_packed_mask_lets_endings_see_their_context_and_themselves_only():
    # Example 0: context of 2, endings of 2 and 1 input tokens; example 1: context of 1, ending of 1; padding.
    slots = torch.tensor([[0, 0, 0, 0, 0, 1, 1, -1]])
    parts = torch.tensor([[0, 0, 1, 1, 2, 0, 1, 0]])
    mask = packed_attention_mask(slots, parts)[0, 0].int()
    assert mask.tolist() == [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0, 0],  # ending 2 does not see ending 1
        [0, 0, 0, 0, 0, 1, 0, 0],  # the next example sees nothing of the first
        [0, 0, 0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0, 1],  # padding sees itself only (never an empty row), its output is unused
    ]


def test_pack_examples_best_fit_decreasing():
    rows = pack_examples([5, 9, 3, 7, 1, 10, 2], capacity=10)
    assert rows == [[5], [1, 4], [3, 2], [0, 6]]  # 10 | 9 + 1 | 7 + 3 | 5 + 2: the tightest row that fits
    assert sorted(i for row in rows for i in row) == list(range(7))
    assert pack_examples([], capacity=0) == []
    with pytest.raises(ValueError, match="does not fit"):
        pack_examples([11], capacity=10)


def test_packing_probe_rejects_models_that_ignore_the_mask_or_the_positions(fixture_setup):
    _, _, model = fixture_setup
    model.eval()
    cpu = torch.device("cpu")

    class DropsArgument(torch.nn.Module):  # takes the argument, then ignores it
        def __init__(self, inner, dropped):
            super().__init__()
            self.inner, self.config, self.dropped = inner, inner.config, dropped

        def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None):
            kwargs = {"attention_mask": attention_mask, "position_ids": position_ids}
            kwargs[self.dropped] = None
            return self.inner(input_ids=input_ids, use_cache=use_cache, **kwargs)

    assert supports_shared_context(DropsArgument(model, "nothing"), cpu)
    assert not supports_shared_context(DropsArgument(model, "attention_mask"), cpu)
    assert not supports_shared_context(DropsArgument(model, "position_ids"), cpu)
    zero = convert_from_hf_gpt2(model).eval()
    torch.nn.init.zeros_(zero.transformer.wpe.weight)  # positions do not matter: the probe cannot tell
    with torch.no_grad():
        zero.transformer.wte.weight.zero_()
    assert not supports_shared_context(zero, cpu)
