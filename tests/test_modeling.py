"""The model: exact parity with transformers' GPT-2, Hub round trip, generation, parameter counts."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, pipeline

from nanogpt2.cli import main as nanogpt2_main
from nanogpt2.data import add_chat_template
from nanogpt2.modeling import (
    NanoGPT2Config,
    NanoGPT2LMHeadModel,
    NanoGPT2Model,
    convert_from_hf_gpt2,
    convert_to_hf_gpt2,
    padded_vocab_size,
)

SMALL_CONFIGS = [
    dict(vocab_size=97, n_positions=32, n_embd=16, n_layer=1, n_head=1),
    dict(vocab_size=300, n_positions=64, n_embd=48, n_layer=3, n_head=4),
    dict(vocab_size=257, n_positions=128, n_embd=64, n_layer=2, n_head=8, n_inner=96, layer_norm_epsilon=1e-6),
]


def hf_gpt2(seed: int = 0, **cfg) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        activation_function="gelu_new", bos_token_id=0, eos_token_id=0,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **cfg,
    )
    return GPT2LMHeadModel(config).eval()


def tiny_nanogpt2(seed: int = 0, **cfg) -> NanoGPT2LMHeadModel:
    torch.manual_seed(seed)
    defaults = dict(vocab_size=300, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
    return NanoGPT2LMHeadModel(NanoGPT2Config(**{**defaults, **cfg})).eval()


@pytest.mark.parametrize("cfg", SMALL_CONFIGS)
def test_logits_and_loss_match_transformers_gpt2_both_directions(cfg):
    hf = hf_gpt2(**cfg)
    x = torch.randint(0, cfg["vocab_size"], (3, cfg["n_positions"] // 2))
    # The round trip keeps the config too (epsilon, inner width, special ids), not only the weights.
    back = convert_to_hf_gpt2(convert_from_hf_gpt2(hf)).config.to_dict()
    assert {k: back[k] for k in hf.config.to_dict() if k not in ("architectures", "dtype")} == {
        k: v for k, v in hf.config.to_dict().items() if k not in ("architectures", "dtype")}
    with torch.no_grad():
        ref = hf(x, labels=x)
        ours = convert_from_hf_gpt2(hf)(x, labels=x)
        assert (ours.logits - ref.logits).abs().max().item() <= 1e-5
        assert abs(ours.loss.item() - ref.loss.item()) <= 1e-5

        # And back: a nanogpt2 model with its own random init becomes a GPT-2 with the same outputs.
        model = tiny_nanogpt2(seed=1, **cfg)
        back = convert_to_hf_gpt2(model)
        assert isinstance(back, GPT2LMHeadModel)
        ours, ref = model(x, labels=x), back(x, labels=x)
        assert (ours.logits - ref.logits).abs().max().item() <= 1e-5
        assert abs(ours.loss.item() - ref.loss.item()) <= 1e-5


def test_shift_labels_equal_labels_and_ignore_index():
    model = tiny_nanogpt2()
    x = torch.randint(0, 300, (2, 17))
    with torch.no_grad():
        by_labels = model(x, labels=x).loss
        by_shift = model(x[:, :-1], shift_labels=x[:, 1:]).loss
        assert torch.allclose(by_labels, by_shift, atol=1e-6)
        # -100 targets are ignored: the loss over the other positions only.
        y = x[:, 1:].clone()
        y[:, :8] = -100
        logits = model(x[:, :-1]).logits
        manual = torch.nn.functional.cross_entropy(logits[:, 8:].reshape(-1, 300), y[:, 8:].reshape(-1))
        assert torch.allclose(model(x[:, :-1], shift_labels=y).loss, manual, atol=1e-6)


def test_padded_vocabulary_conversion_and_masking():
    hf = hf_gpt2(vocab_size=101, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    padded = convert_from_hf_gpt2(hf, pad_vocab_to_multiple_of=64)
    assert padded.config.vocab_size == 128 and padded.config.tokenizer_vocab_size == 101
    x = torch.randint(0, 101, (2, 12))
    with torch.no_grad():
        ref, out = hf(x, labels=x), padded(x, labels=x)
        assert (out.logits[..., :101] - ref.logits).abs().max().item() <= 1e-5
        assert torch.isneginf(out.logits[..., 101:]).all()
        assert abs(out.loss.item() - ref.loss.item()) <= 1e-5
        # Back to plain GPT-2: padding dropped by default, kept on request.
        assert convert_to_hf_gpt2(padded).config.vocab_size == 101
        assert convert_to_hf_gpt2(padded, keep_vocab_padding=True).config.vocab_size == 128
        assert (convert_to_hf_gpt2(padded)(x).logits - ref.logits).abs().max().item() <= 1e-5


def test_padded_vocabulary_never_generated_and_gradients_flow():
    # Make the padding rows maximally attractive: they must still never be emitted.
    model = tiny_nanogpt2(vocab_size=320, tokenizer_vocab_size=300)
    with torch.no_grad():
        model.transformer.wte.weight[300:] = 50.0
    prompt = torch.randint(0, 300, (2, 5))
    sampled = model.generate(prompt, max_new_tokens=20, do_sample=True, top_k=0, pad_token_id=0)
    greedy = model.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert sampled.max().item() < 300 and greedy.max().item() < 300
    model.train()
    loss = model(prompt, labels=prompt).loss
    loss.backward()
    assert torch.isfinite(loss) and model.transformer.wte.weight.grad[:300].abs().sum() > 0


def test_default_config_is_gpt2_small():
    config = NanoGPT2Config()
    assert (config.n_layer, config.n_head, config.n_embd, config.n_positions) == (12, 12, 768, 1024)
    assert config.hidden_size == 768 and config.num_hidden_layers == 12
    assert config.num_attention_heads == 12 and config.max_position_embeddings == 1024
    assert config.tie_word_embeddings and config.bos_token_id == config.eos_token_id == 50256
    with torch.device("meta"):
        assert NanoGPT2LMHeadModel(config).num_parameters() == 124_439_808
        assert NanoGPT2LMHeadModel(NanoGPT2Config(vocab_size=50304)).num_parameters() == 124_475_904


def test_gpt2_initialisation_scales_residual_projections():
    torch.manual_seed(0)
    model = NanoGPT2LMHeadModel(NanoGPT2Config(n_layer=8, n_embd=256, n_head=4, vocab_size=1000, n_positions=256))
    block = model.transformer.h[0]
    assert abs(block.attn.c_attn.weight.std().item() - 0.02) < 0.002
    expected = 0.02 / (2 * 8) ** 0.5
    for w in (block.attn.c_proj.weight, block.mlp.c_proj.weight):
        assert abs(w.std().item() - expected) < 0.1 * expected
    assert block.attn.c_attn.bias.abs().max() == 0 and block.ln_1.weight.eq(1).all()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


def test_bad_config_values_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        NanoGPT2Config(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="tokenizer_vocab_size"):
        NanoGPT2Config(vocab_size=100, tokenizer_vocab_size=101)
    with pytest.raises(ValueError, match="longer than n_positions"):
        tiny_nanogpt2(n_positions=8)(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="position 8 is beyond n_positions=8"):
        tiny_nanogpt2(n_positions=8)(torch.zeros(1, 2, dtype=torch.long), position_ids=torch.tensor([[7, 8]]))
    # Left padding does not use up positions: 4 pads + 8 real tokens fit a model of 8 positions.
    ids, mask = torch.ones(1, 12, dtype=torch.long), torch.tensor([[0] * 4 + [1] * 8])
    assert tiny_nanogpt2(n_positions=8)(ids, attention_mask=mask).logits.shape == (1, 12, 300)


def test_conversion_refuses_variants_it_cannot_reproduce():
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=8, n_embd=8, n_layer=1, n_head=2,
                                    activation_function="relu"))
    with pytest.raises(ValueError, match="activation_function"):
        convert_from_hf_gpt2(hf)


def test_greedy_generate_with_and_without_cache_equals_transformers():
    hf = hf_gpt2(vocab_size=300, n_positions=64, n_embd=32, n_layer=3, n_head=4)
    model = convert_from_hf_gpt2(hf)
    prompt = torch.randint(1, 300, (2, 6))
    kwargs = dict(max_new_tokens=25, do_sample=False, pad_token_id=0, eos_token_id=None)
    ref = hf.generate(prompt, **kwargs)
    cached = model.generate(prompt, **kwargs)
    uncached = model.generate(prompt, use_cache=False, **kwargs)
    assert torch.equal(cached, ref) and torch.equal(uncached, ref)


def test_left_padded_batch_generates_like_each_prompt_alone():
    model = tiny_nanogpt2(n_layer=3)
    prompts = [torch.randint(1, 300, (n,)) for n in (3, 9, 6)]
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = p
        mask[i, width - len(p):] = 1
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
    batch = model.generate(ids, attention_mask=mask, **kwargs)
    for i, p in enumerate(prompts):
        alone = model.generate(p[None], **kwargs)
        assert torch.equal(batch[i, width:], alone[0, len(p):]), f"prompt {i} differs"
    # The forward itself: a left-padded row's real positions match the unpadded row.
    with torch.no_grad():
        padded_logits = model(ids, attention_mask=mask).logits
        for i, p in enumerate(prompts):
            alone = model(p[None]).logits[0]
            assert (padded_logits[i, width - len(p):] - alone).abs().max() < 1e-5


@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_4d_mask_packs_sequences_like_transformers_gpt2(mask_kind):
    # Two sequences in one row, each seeing only itself, positions restarting: each must give the
    # logits it gives alone, and transformers' GPT-2 must agree on the same packed input.
    hf = hf_gpt2(**SMALL_CONFIGS[1])
    model = convert_from_hf_gpt2(hf).eval()
    a, b = torch.randint(0, 300, (5,)), torch.randint(0, 300, (7,))
    ids = torch.cat([a, b])[None]  # (1, 12)
    positions = torch.cat([torch.arange(5), torch.arange(7)])[None]
    doc = torch.tensor([0] * 5 + [1] * 7)
    allowed = (doc[:, None] == doc[None, :]) & torch.ones(12, 12, dtype=torch.bool).tril()  # (T, T)
    mask = allowed if mask_kind == "bool" else torch.zeros(12, 12).masked_fill(~allowed, torch.finfo(torch.float32).min)
    mask = mask[None, None]  # (1, 1, T, T)
    with torch.no_grad():
        packed = model(ids, attention_mask=mask, position_ids=positions).logits[0]
        reference = hf(ids, attention_mask=mask, position_ids=positions).logits[0]
        assert (packed[:5] - model(a[None]).logits[0]).abs().max() < 1e-5
        assert (packed[5:] - model(b[None]).logits[0]).abs().max() < 1e-5
        assert (packed - reference).abs().max() < 1e-5
        with pytest.raises(ValueError, match=r"4D attention_mask must have shape \(batch, 1, 12, 12\)"):
            model(ids, attention_mask=mask[..., :11], position_ids=positions)


FRESH_PROCESS_LOAD = textwrap.dedent(
    """
    import json, sys, torch
    from transformers import AutoModel, AutoModelForCausalLM
    folder, ids = sys.argv[1], torch.tensor(json.loads(sys.argv[2]))
    lm = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert "nanogpt2" not in sys.modules and "nanogpt2.modeling" not in sys.modules
    with torch.no_grad():
        out = {"lm_class": type(lm).__module__ + "." + type(lm).__name__,
               "base_class": type(base).__name__,
               "logits": lm(ids).logits.tolist(),
               "hidden": base(ids).last_hidden_state.tolist()}
    print(json.dumps(out))
    """
)


def test_save_pretrained_round_trip_in_fresh_process(tmp_path):
    model = tiny_nanogpt2(vocab_size=320, tokenizer_vocab_size=300)
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_nanogpt2.py", "configuration_nanogpt2.py"} <= files
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "nanogpt2"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_nanogpt2.NanoGPT2LMHeadModel"
    assert config["auto_map"]["AutoModel"] == "modeling_nanogpt2.NanoGPT2Model"
    assert config["auto_map"]["AutoConfig"] == "configuration_nanogpt2.NanoGPT2Config"
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "transformer.wte.weight" in keys and "lm_head.weight" not in keys  # tied: stored once

    ids = torch.randint(0, 300, (2, 10))
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_LOAD, str(tmp_path), json.dumps(ids.tolist())],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["lm_class"].startswith("transformers_modules.") and out["base_class"] == "NanoGPT2Model"
    with torch.no_grad():
        expected = model(ids)
    assert torch.equal(torch.tensor(out["logits"]), expected.logits)
    assert torch.equal(torch.tensor(out["hidden"]), model.transformer(ids).last_hidden_state)


def test_auto_classes_load_in_process(tmp_path):
    model = tiny_nanogpt2()
    model.save_pretrained(tmp_path)
    lm = AutoModelForCausalLM.from_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(lm, NanoGPT2LMHeadModel) and isinstance(base, NanoGPT2Model)
    ids = torch.randint(0, 300, (1, 8))
    with torch.no_grad():
        assert torch.equal(base(ids).last_hidden_state, model.transformer(ids).last_hidden_state)
        assert torch.equal(lm(ids).logits, model(ids).logits)


def test_pipeline_generates_from_saved_folder(tmp_path, tiny_tokenizer):
    model = tiny_nanogpt2(vocab_size=len(tiny_tokenizer), eos_token_id=tiny_tokenizer.eos_token_id)
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path), trust_remote_code=True)
    out = generator("the model", max_new_tokens=8, do_sample=False)
    assert out[0]["generated_text"].startswith("the model") and len(out[0]["generated_text"]) > len("the model")


def test_pipeline_with_real_gpt2_tokenizer_offline(tmp_path, gpt2_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    model = tiny_nanogpt2(vocab_size=50304, tokenizer_vocab_size=50257, bos_token_id=50256, eos_token_id=50256)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path), trust_remote_code=True)
    text = generator("Hello world", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("Hello world")


def test_padded_vocab_size_rounds_up_to_the_multiple():
    assert [padded_vocab_size(n) for n in (50257, 64, 65, 1)] == [50304, 64, 128, 64]
    assert padded_vocab_size(101, 8) == 104


def test_convert_command_line_both_directions(tmp_path, tiny_tokenizer):
    hf = hf_gpt2(vocab_size=len(tiny_tokenizer), n_positions=32, n_embd=32, n_layer=2, n_head=2)
    hf.save_pretrained(tmp_path / "gpt2")
    tiny_tokenizer.save_pretrained(tmp_path / "gpt2")
    assert nanogpt2_main(["convert", "--from-hf", str(tmp_path / "gpt2"), "--out", str(tmp_path / "nano"),
                          "--pad-vocab", "64"]) == 0
    nano = AutoModelForCausalLM.from_pretrained(tmp_path / "nano")
    assert isinstance(nano, NanoGPT2LMHeadModel) and nano.config.vocab_size == padded_vocab_size(len(tiny_tokenizer))
    assert (tmp_path / "nano" / "tokenizer.json").is_file()  # the source's tokenizer travels along
    assert nanogpt2_main(["convert", "--to-hf", str(tmp_path / "nano"), "--out", str(tmp_path / "back")]) == 0
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "back")
    assert "auto_map" not in json.loads((tmp_path / "back" / "config.json").read_text())
    x = torch.randint(0, len(tiny_tokenizer), (2, 10))
    with torch.no_grad():
        assert (back(x).logits - hf(x).logits).abs().max() <= 1e-5
        assert (nano(x).logits[..., :len(tiny_tokenizer)] - hf(x).logits).abs().max() <= 1e-5


@pytest.mark.parametrize("direction", ["--from-hf", "--to-hf"])
def test_convert_names_a_source_it_cannot_load(direction, tmp_path, capsys):
    assert nanogpt2_main(["convert", direction, "no-such-user/no-such-model", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no-such-user/no-such-model" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_training_forward_compiles_as_one_graph():
    # The training path (no mask, no cache, padded vocabulary) must trace without graph breaks so that
    # torch.compile can fuse it on CUDA; aot_eager checks the capture and autograd without codegen.
    model = tiny_nanogpt2(vocab_size=320, tokenizer_vocab_size=300).train()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randint(0, 300, (2, 16))
    y = torch.randint(0, 300, (2, 16))
    eager_loss = model(input_ids=x, shift_labels=y).loss
    eager_loss.backward()
    eager_grad = model.transformer.wte.weight.grad.clone()
    model.zero_grad(set_to_none=True)
    compiled_loss = compiled(input_ids=x, shift_labels=y).loss
    compiled_loss.backward()
    assert torch.allclose(compiled_loss, eager_loss, atol=1e-6)
    assert torch.allclose(model.transformer.wte.weight.grad, eager_grad, atol=1e-6)


def test_forward_compiles_with_dynamic_shapes():
    # Evaluation compiles with dynamic=True (sequence lengths vary): the causal-attention choice must not
    # hand SDPA a symbolic bool, at any length, a single token included.
    torch._dynamo.reset()
    model = tiny_nanogpt2(vocab_size=320, tokenizer_vocab_size=300).eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="eager")
    for length in (16, 9, 1):
        x = torch.randint(0, 300, (2, length))
        got = compiled(input_ids=x, use_cache=False).logits
        assert torch.allclose(got, model(input_ids=x, use_cache=False).logits, atol=1e-5), length
    torch._dynamo.reset()


def test_plain_gpt2_export_keeps_what_a_chat_model_needs(tmp_path, tiny_tokenizer_dir):
    # What `transformers serve` needs of a chat model: the chat tokens' rows, the chat template, and the
    # end-of-turn id among the generation config's end-of-sequence ids.
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    eos_ids = add_chat_template(tokenizer)  # [<|endoftext|>, <|end|>]: ids 300-303 are the chat markers
    n_tokens = len(tokenizer)
    model = tiny_nanogpt2(vocab_size=320, tokenizer_vocab_size=n_tokens)
    model.generation_config.eos_token_id = eos_ids
    with torch.no_grad():  # every position's final state points at <|end|>'s row: greedy decoding ends the reply
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(10 * model.transformer.wte.weight[eos_ids[1]])
    model.save_pretrained(tmp_path / "chat")
    tokenizer.save_pretrained(tmp_path / "chat")
    assert nanogpt2_main(["convert", "--to-hf", str(tmp_path / "chat"), "--out", str(tmp_path / "plain")]) == 0

    plain = GPT2LMHeadModel.from_pretrained(tmp_path / "plain").eval()
    assert plain.config.vocab_size == n_tokens == 304
    assert torch.equal(plain.transformer.wte.weight, model.transformer.wte.weight[:n_tokens])
    assert json.loads((tmp_path / "plain" / "generation_config.json").read_text())["eos_token_id"] == eos_ids
    assert (tmp_path / "plain" / "chat_template.jinja").is_file()
    messages = [{"role": "user", "content": "hi"}]
    plain_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "plain")
    prompt = plain_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)["input_ids"]
    assert prompt.tolist() == tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                            return_dict=True)["input_ids"].tolist()
    reply = plain.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=eos_ids[0])[0, prompt.shape[1]:]
    assert reply.tolist() == [eos_ids[1]]  # stopped at the end of the turn
