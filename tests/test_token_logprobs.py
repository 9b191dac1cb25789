"""Token log-probabilities from the body and output layer run apart equal the model's own log-softmax."""

import pytest
import torch
from _hellaswag_helpers import make_examples, plain_scores, predictions, tiny_gpt2, train_tiny_tokenizer
from transformers import GPT2Config, GPT2LMHeadModel

from nanogpt2.evaluation import score_hellaswag
from nanogpt2.evaluation.token_logprobs import OutputLayer
from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel

CPU = torch.device("cpu")
NO_CACHE = {"use_cache": False}


def nanogpt2_padded(vocab: int = 300, pad: int = 13) -> NanoGPT2LMHeadModel:
    torch.manual_seed(1)
    config = NanoGPT2Config(
        vocab_size=vocab + pad, tokenizer_vocab_size=vocab, n_positions=256, n_embd=32, n_layer=2, n_head=4
    )
    return NanoGPT2LMHeadModel(config).eval()


def gpt2_with_biased_head(vocab: int = 300) -> GPT2LMHeadModel:
    model = tiny_gpt2(vocab, n_positions=256, seed=2)
    model.lm_head = torch.nn.Linear(48, vocab, bias=True)  # untied, with a bias the tiles must add
    torch.nn.init.normal_(model.lm_head.bias, std=3.0)
    return model.eval()


MODELS = {
    "transformers-gpt2": lambda: tiny_gpt2(300, n_positions=256, seed=1).eval(),
    "gpt2-biased-head": gpt2_with_biased_head,
    "nanogpt2-padded-vocab": nanogpt2_padded,
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("tile", [(1024, 1024), (5, 64), (1, 300), (7, 299)])
def test_token_logprobs_equal_the_models_log_softmax(name, tile):
    model = MODELS[name]()
    layer = OutputLayer.of(model, CPU, NO_CACHE)
    assert layer is not None
    assert layer.weight.shape[0] == 300  # the padded rows of nanogpt2's vocabulary are cut
    layer.rows_per_tile, layer.vocab_per_tile = tile  # ragged last tiles in both directions
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 300, (3, 17), generator=generator)
    with torch.no_grad():
        want = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1).flatten(0, 1)[:, :300]  # (51, V)
        hidden = layer.hidden_states(input_ids=ids, **NO_CACHE).flatten(0, 1)  # (51, C)
        rows = torch.randint(0, 51, (80,), generator=generator)  # positions repeat, as a shared context's does
        targets = torch.randint(0, 300, (80,), generator=generator)
        got = layer.token_logprobs(hidden, rows, targets)
    assert got.dtype == torch.float32 and got.shape == (80,)
    torch.testing.assert_close(got, want[rows, targets], atol=2e-5, rtol=0)


def test_token_logprobs_under_bf16_autocast_are_close():
    model = nanogpt2_padded()
    ids = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        layer = OutputLayer.of(model, CPU, NO_CACHE)
        assert layer is not None
        layer.rows_per_tile, layer.vocab_per_tile = 4, 128
        want = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1).flatten(0, 1)  # (18, V)
        hidden = layer.hidden_states(input_ids=ids, **NO_CACHE).flatten(0, 1)
        rows, targets = torch.arange(18), ids.flatten().roll(-1)
        got = layer.token_logprobs(hidden, rows, targets)
    fp32 = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1).flatten(0, 1)[rows, targets].detach()
    torch.testing.assert_close(got, want[rows, targets], atol=0.05, rtol=0)  # both bf16: same rounding scale
    assert (got - fp32).abs().max() > 0  # autocast was on


def test_output_layer_refuses_models_it_would_misread():
    class SoftCapped(GPT2LMHeadModel):  # a final transform of the logits that the output layer lacks
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = 30.0 * torch.tanh(out.logits / 30.0)
            return out

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=300, n_positions=256, n_embd=48, n_layer=1, n_head=4)
    capped = SoftCapped(config).eval()
    torch.nn.init.normal_(capped.transformer.wte.weight, std=2.0)  # logits large enough for the cap to bite
    assert OutputLayer.of(capped, CPU, NO_CACHE) is None

    class Wrapped(torch.nn.Module):  # no body / output layer to reach
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, **kwargs):
            return self.inner(input_ids=input_ids, **kwargs)

    assert OutputLayer.of(Wrapped(tiny_gpt2(300)).eval(), CPU, NO_CACHE) is None
    assert OutputLayer.of(tiny_gpt2(300).eval(), CPU, NO_CACHE) is not None


@pytest.mark.parametrize("name", ["transformers-gpt2", "nanogpt2-padded-vocab"])
def test_packed_scores_through_small_tiles_equal_plain(name, monkeypatch):
    examples = make_examples(16, seed=4)
    tokenizer = train_tiny_tokenizer(examples, vocab_size=300)
    model = MODELS[name]()
    assert len(tokenizer) <= 300
    calls = []
    original = OutputLayer.token_logprobs

    def counted(self, *args):
        calls.append(self.vocab_per_tile)
        return original(self, *args)

    monkeypatch.setattr(OutputLayer, "cpu_tile", (6, 64))
    monkeypatch.setattr(OutputLayer, "token_logprobs", counted)
    batched = score_hellaswag(model, tokenizer, examples, batch_size=5, progress=False)
    assert calls and set(calls) == {64}  # every batch went through the tiles
    plain = plain_scores(model, tokenizer, examples, "nanogpt")
    got, want = torch.tensor(batched.ending_logprobs), torch.tensor(plain.ending_logprobs)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0, check_dtype=False)
    assert predictions(batched) == predictions(plain)
