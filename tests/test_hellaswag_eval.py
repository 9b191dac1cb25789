"""The batched HellaSwag evaluator equals the one-ending-at-a-time computation, packed or plain."""

import pytest
import tiktoken
import torch
from _hellaswag_helpers import assert_same_scores, make_examples, plain_scores, tiny_gpt2, tiny_nanogpt2
from accelerate import Accelerator
from tiktoken_ext.openai_public import r50k_pat_str
from transformers import AutoTokenizer

from nanogpt2.data.tokenization import gpt2_style_bpe_ranks
from nanogpt2.evaluation import evaluate_hellaswag, load_hellaswag, load_hellaswag_metric, score_hellaswag
from nanogpt2.evaluation.hellaswag import reads_packed_rows, tokenize_requests
from nanogpt2.evaluation.hellaswag.packing import pack_segments, packed_attention_mask, plan_batches, segment_length

MODELS = {"transformers-gpt2": tiny_gpt2, "nanogpt2-padded-vocab": tiny_nanogpt2}


@pytest.fixture(scope="module")
def setup(tiny_tokenizer):
    """24 examples and, per model, the model and its one-at-a-time scores in both styles (computed once)."""
    examples = make_examples(24)
    models = {name: make(len(tiny_tokenizer)) for name, make in MODELS.items()}
    plain = {(name, style): plain_scores(model, tiny_tokenizer, examples, style)
             for name, model in models.items() for style in ("nanogpt", "lm-eval")}
    return examples, models, plain


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("style", ["nanogpt", "lm-eval"])
@pytest.mark.parametrize("share_context", [True, False])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batched_equals_one_at_a_time(setup, tiny_tokenizer, name, style, share_context, batch_size):
    examples, models, plain = setup
    batched = score_hellaswag(models[name], tiny_tokenizer, examples, style=style, batch_size=batch_size,
                              progress=False, share_context=share_context)
    assert_same_scores(batched, plain[name, style])


def test_real_examples_and_tokenizer(gpt2_tokenizer_dir, hellaswag_val_path):
    tokenizer = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    examples = load_hellaswag(hellaswag_val_path, limit=10)
    model = tiny_nanogpt2(len(tokenizer), n_positions=1024, seed=3)
    for style in ("nanogpt", "lm-eval"):
        plain = plain_scores(model, tokenizer, examples, style)
        for share_context in (True, False):
            batched = score_hellaswag(model, tokenizer, examples, style=style, batch_size=16, progress=False,
                                      share_context=share_context)
            assert_same_scores(batched, plain)


def test_which_models_get_packed_rows(setup, tiny_tokenizer):
    examples, models, plain = setup
    assert reads_packed_rows(models["nanogpt2-padded-vocab"])
    assert reads_packed_rows(models["transformers-gpt2"])
    # transformers' eager attention adds a boolean mask to the scores as 0/1: packing it would be wrong,
    # so it gets plain rows, which are exact.
    eager = tiny_gpt2(len(tiny_tokenizer), attention="eager")
    assert not reads_packed_rows(eager)
    assert_same_scores(score_hellaswag(eager, tiny_tokenizer, examples, progress=False),
                       plain["transformers-gpt2", "nanogpt"])
    forced = score_hellaswag(eager, tiny_tokenizer, examples, progress=False, share_context=True)
    diff = torch.tensor(forced.ending_logprobs) - torch.tensor(plain["transformers-gpt2", "nanogpt"].ending_logprobs)
    assert diff.abs().max() > 0.1


def test_model_that_takes_only_input_ids(setup, tiny_tokenizer):
    examples, models, plain = setup

    class InputIdsOnly(torch.nn.Module):  # no attention_mask, position_ids or logits_to_keep
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids):
            return self.inner(input_ids=input_ids)

    model = InputIdsOnly(models["transformers-gpt2"])
    assert not reads_packed_rows(model)
    batched = score_hellaswag(model, tiny_tokenizer, examples, batch_size=6, progress=False)
    assert_same_scores(batched, plain["transformers-gpt2", "nanogpt"])


@pytest.mark.parametrize("name", MODELS)
def test_torch_compiled_model(setup, tiny_tokenizer, name):
    examples, models, plain = setup
    compiled = torch.compile(models[name], backend="eager", dynamic=True)
    assert reads_packed_rows(compiled._orig_mod)
    batched = score_hellaswag(compiled, tiny_tokenizer, examples, batch_size=8, progress=False)
    assert_same_scores(batched, plain[name, "nanogpt"])


@pytest.mark.parametrize("name", MODELS)
def test_left_truncation_to_the_model_length(tiny_tokenizer, name):
    examples = make_examples(12, seed=1)
    requests = tokenize_requests(examples, tiny_tokenizer, style="nanogpt", max_length=None)
    n_positions = max(r.n_ending_tokens for r in requests) + 3
    assert sum(len(r.tokens) > n_positions + 1 for r in requests) > 10  # many contexts get cut
    model = MODELS[name](len(tiny_tokenizer), n_positions=n_positions)
    plain = plain_scores(model, tiny_tokenizer, examples, "nanogpt")
    for share_context in (True, False):
        batched = score_hellaswag(model, tiny_tokenizer, examples, batch_size=5, progress=False,
                                  share_context=share_context)
        assert_same_scores(batched, plain)


@pytest.mark.parametrize("name", MODELS)
def test_packed_rows_longer_than_the_model(tiny_tokenizer, name):
    # No request is truncated, but a packed row (an example's context and all its endings, or several
    # examples) holds more tokens than the model has positions: positions restart per example.
    examples = make_examples(12, seed=2)
    requests = tokenize_requests(examples, tiny_tokenizer, style="nanogpt", max_length=None)
    n_positions = max(len(r.tokens) for r in requests) - 1
    assert max(segment_length(requests[k:k + 4]) for k in range(0, len(requests), 4)) > n_positions
    model = MODELS[name](len(tiny_tokenizer), n_positions=n_positions)
    batched = score_hellaswag(model, tiny_tokenizer, examples, batch_size=12, progress=False)
    assert_same_scores(batched, plain_scores(model, tiny_tokenizer, examples, "nanogpt"))


def test_tiktoken_encoding_scores_like_the_tokenizer(setup, tiny_tokenizer):
    examples, models, plain = setup
    ranks, reason = gpt2_style_bpe_ranks(tiny_tokenizer)
    assert ranks is not None, reason
    encoding = tiktoken.Encoding("tiny", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                 special_tokens={"<|endoftext|>": tiny_tokenizer.eos_token_id})
    batched = score_hellaswag(models["nanogpt2-padded-vocab"], encoding, examples, style="lm-eval", progress=False)
    assert_same_scores(batched, plain["nanogpt2-padded-vocab", "lm-eval"])


def test_plan_batches(setup, tiny_tokenizer):
    examples = setup[0]
    requests = tokenize_requests(examples, tiny_tokenizer, style="nanogpt", max_length=None)
    packed = plan_batches(requests, 5, share_context=True)
    segments = [segment for batch in packed for row in batch for segment in row]
    assert sorted(r for segment in segments for r in segment) == list(range(len(requests)))
    assert all(len(segment) == 4 for segment in segments)  # every example's context shared
    assert all(len(sum(batch, [])) >= 5 for batch in packed[:-1])  # at least batch_size examples a pass
    plain = plan_batches(requests, 5, share_context=False)
    assert [sum(len(row) for row in batch) for batch in plain] == [20, 20, 20, 20, 16]
    lengths = [len(requests[row[0][0]].tokens) for batch in plain for row in batch]
    assert lengths == sorted(lengths, reverse=True)  # longest first: padding is small, OOM shows at once
    # Contexts cut differently for each ending (left truncation): one segment per request.
    cut = tokenize_requests(examples[:1], tiny_tokenizer, style="nanogpt", max_length=len(requests[0].tokens) - 2)
    assert len({r.n_ending_tokens for r in cut}) > 1
    assert [len(s) for batch in plan_batches(cut, 5, share_context=True) for row in batch for s in row] == [1] * 4


def test_evaluate_returns_the_metric_of_the_scores(setup, tiny_tokenizer):
    examples, models, plain = setup
    result = evaluate_hellaswag(models["transformers-gpt2"], tiny_tokenizer, examples, style="lm-eval",
                                batch_size=8, progress=False)
    assert result == load_hellaswag_metric().compute(**plain["transformers-gpt2", "lm-eval"].metric_inputs())
    assert set(result) == {"acc", "acc_norm", "acc_norm_chars", "n"} and result["n"] == 24
    assert type(result["n"]) is int and all(type(result[k]) is float for k in ("acc", "acc_norm", "acc_norm_chars"))


def test_restores_training_mode_and_builds_no_graph(setup, tiny_tokenizer):
    examples, models, _ = setup
    model = models["nanogpt2-padded-vocab"]
    model.train()
    scores = score_hellaswag(model, tiny_tokenizer, examples[:4], progress=False)
    assert model.training and all(p.grad is None for p in model.parameters())
    model.eval()
    score_hellaswag(model, tiny_tokenizer, examples[:4], progress=False)
    assert not model.training
    assert len(scores.ending_logprobs) == 4


def test_accelerator_bf16_autocast_runs_close_to_fp32(setup, tiny_tokenizer):
    examples, models, plain = setup
    accelerator = Accelerator(mixed_precision="bf16", cpu=True)
    model = models["nanogpt2-padded-vocab"]
    bf16 = score_hellaswag(model, tiny_tokenizer, examples, batch_size=8, accelerator=accelerator, progress=False)
    diff = torch.tensor(bf16.ending_logprobs) - torch.tensor(plain["nanogpt2-padded-vocab", "nanogpt"].ending_logprobs)
    assert 0 < diff.abs().max() < 0.5  # autocast was on (results differ) and bf16 is still close
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_packed_mask_lets_endings_see_their_context_and_themselves_only():
    # Segment 0: context of 2, endings of 2 and 1 input tokens; segment 1: context of 1, ending of 1; padding.
    slots = torch.tensor([[0, 0, 0, 0, 0, 1, 1, -1]])
    parts = torch.tensor([[0, 0, 1, 1, 2, 0, 1, 0]])
    assert packed_attention_mask(slots, parts)[0, 0].int().tolist() == [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0, 0],  # ending 2 does not see ending 1
        [0, 0, 0, 0, 0, 1, 0, 0],  # the next segment sees nothing of the first
        [0, 0, 0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0, 1],  # padding sees itself only (never an empty row), its output is unused
    ]


def test_pack_segments_best_fit_decreasing():
    rows = pack_segments([5, 9, 3, 7, 1, 10, 2], capacity=10)
    assert rows == [[5], [1, 4], [3, 2], [0, 6]]  # 10 | 9 + 1 | 7 + 3 | 5 + 2: the tightest row that fits
    assert pack_segments([], capacity=0) == []
    with pytest.raises(ValueError, match="11"):
        pack_segments([11], capacity=10)
