"""`load_gpt2` and `nanogpt2 convert --from`: nanoGPT / build-nanogpt `.pt` and llm.c `.bin` files imported exactly
(logits against the source model in fp32), read without running their code, and bad files named in one line."""

import dataclasses
import pickle
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from nanogpt2.cli import main as nanogpt2_main
from nanogpt2.modeling import NanoGPT2LMHeadModel, convert_to_hf_gpt2, load_gpt2

CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
TINY = dict(vocab_size=101, n_positions=32, n_embd=16, n_layer=2, n_head=2)


def source_gpt2(activation: str = "gelu_new", seed: int = 0, **cfg) -> GPT2LMHeadModel:
    """The model a checkpoint is written from: transformers' GPT-2 with random weights (biases too), fp32."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(activation_function=activation, **{**TINY, **cfg})).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                param.normal_(0, 0.1)  # not 0 / 1, so a misplaced bias or LayerNorm cannot go unseen
    return model


def linear_state(model: GPT2LMHeadModel) -> dict[str, torch.Tensor]:
    """`model`'s weights as nanoGPT / build-nanogpt / llm.c keep them: nn.Linear (out, in), lm_head tied."""
    state = {name: (t.t() if name.endswith(CONV1D_WEIGHTS) else t).contiguous()
             for name, t in model.state_dict().items()}
    state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def assert_same_logits(model: NanoGPT2LMHeadModel, source: GPT2LMHeadModel, atol: float = 1e-5) -> None:
    n_real = source.config.vocab_size
    x = torch.randint(0, n_real, (2, 12))
    with torch.no_grad():
        ours, reference = model(x).logits, source(x).logits
    assert model.config.num_real_tokens == n_real
    assert (ours[..., :n_real] - reference).abs().max().item() <= atol
    assert torch.isneginf(ours[..., n_real:]).all()


def save_build_nanogpt(path: Path, state: dict[str, torch.Tensor], fields: dict[str, int]) -> None:
    """What build-nanogpt's train_gpt2.py saves, its `GPTConfig` pickled as `__main__.GPTConfig` (the script's
    class), which then disappears: loading cannot find, import or run it."""
    config_class = dataclasses.make_dataclass("GPTConfig", list(fields))
    config_class.__module__ = "__main__"
    sys.modules["__main__"].GPTConfig = config_class
    try:
        torch.save({"model": state, "config": config_class(**fields), "step": 100, "val_loss": 3.5}, path)
    finally:
        delattr(sys.modules["__main__"], "GPTConfig")


def build_nanogpt_fields(source: GPT2LMHeadModel) -> dict[str, int]:
    c = source.config
    return dict(block_size=c.n_positions, vocab_size=c.vocab_size, n_layer=c.n_layer, n_head=c.n_head,
                n_embd=c.n_embd)


def save_nanogpt(path: Path, state: dict[str, torch.Tensor], model_args: dict[str, object]) -> None:
    """What nanoGPT's train.py saves: causal-mask buffers in the state dict, model_args, optimizer state."""
    state = dict(state)
    T = model_args["block_size"]
    for layer in range(model_args["n_layer"]):
        state[f"transformer.h.{layer}.attn.bias"] = torch.ones(T, T).tril().view(1, 1, T, T)
    optimizer = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 6e-4, "params": [0]}]}
    torch.save({"model": state, "optimizer": optimizer, "model_args": model_args, "iter_num": 5000,
                "best_val_loss": torch.tensor(1.47), "config": {"dataset": "shakespeare_char", **model_args}}, path)


def write_llmc(path: Path, source: GPT2LMHeadModel, dtype: torch.dtype) -> None:
    """`write_model` of llm.c's train_gpt2.py: header (magic, version 3 = fp32 / 5 = bf16, block size, vocab,
    layers, heads, channels, padded vocab), then every parameter in its order, the embedding padded to 128."""
    c, state = source.config, linear_state(source)
    padded = -(-c.vocab_size // 128) * 128
    header = torch.zeros(256, dtype=torch.int32)
    header[:8] = torch.tensor([20240326, 3 if dtype == torch.float32 else 5, c.n_positions, c.vocab_size,
                               c.n_layer, c.n_head, c.n_embd, padded])
    tensors = [F.pad(state["transformer.wte.weight"], (0, 0, 0, padded - c.vocab_size)),
               state["transformer.wpe.weight"]]
    for suffix in ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                   "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                   "mlp.c_proj.weight", "mlp.c_proj.bias"):
        tensors += [state[f"transformer.h.{i}.{suffix}"] for i in range(c.n_layer)]
    tensors += [state["transformer.ln_f.weight"], state["transformer.ln_f.bias"]]
    with open(path, "wb") as file:
        file.write(header.numpy().tobytes())
        for tensor in tensors:
            tensor = tensor.to(dtype)
            file.write((tensor.view(torch.int16) if dtype == torch.bfloat16 else tensor).numpy().tobytes())


@pytest.mark.parametrize("prefix", ["", "_orig_mod."])
def test_build_nanogpt_checkpoint_imports_exactly(prefix, tmp_path):
    source = source_gpt2()
    path = tmp_path / "model_00100.pt"
    save_build_nanogpt(path, {prefix + name: t for name, t in linear_state(source).items()},
                       build_nanogpt_fields(source))
    with pytest.raises(pickle.UnpicklingError, match="GPTConfig"):  # the dataclass really is in there
        torch.load(path, weights_only=True)
    model = load_gpt2(str(path))
    assert model.config.vocab_size == 128 and model.config.tokenizer_vocab_size == 101
    assert "GPTConfig" not in vars(sys.modules["__main__"])
    assert_same_logits(model, source)


def test_nanogpt_checkpoint_imports_its_weights_exactly(tmp_path):
    # nanoGPT trains on GPT-2's tokens in 50,304 rows; its MLP uses the exact (erf) GELU.
    source = source_gpt2(activation="gelu", vocab_size=50304)
    model_args = dict(n_layer=2, n_head=2, n_embd=16, block_size=32, bias=True, vocab_size=50304, dropout=0.0)
    save_nanogpt(tmp_path / "ckpt.pt", linear_state(source), model_args)
    model = load_gpt2(tmp_path / "ckpt.pt")
    assert (model.config.vocab_size, model.config.tokenizer_vocab_size) == (50304, 50257)
    assert model.config.eos_token_id == 50256 and model.config.activation_function == "gelu"
    x = torch.randint(0, 50257, (2, 12))
    with torch.no_grad():  # exact: nanoGPT's erf GELU is kept, not replaced by GPT-2's tanh one
        assert (model(x).logits[..., :50257] - source(x).logits[..., :50257]).abs().max() <= 1e-5
    # ... and survives the round trip through a save_pretrained folder and the plain-GPT-2 export.
    model.save_pretrained(tmp_path / "saved")
    reloaded = load_gpt2(tmp_path / "saved")
    exported = convert_to_hf_gpt2(reloaded)
    assert reloaded.config.activation_function == exported.config.activation_function == "gelu"
    with torch.no_grad():
        assert (exported(x).logits - source(x).logits[..., :50257]).abs().max() <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_llmc_model_file_imports_exactly(dtype, tmp_path):
    source = source_gpt2(n_layer=3)
    if dtype == torch.bfloat16:  # the file holds bf16 weights: the source is those weights
        source = source.to(torch.bfloat16).float()
    write_llmc(tmp_path / "gpt2_tiny.bin", source, dtype)
    model = load_gpt2(str(tmp_path / "gpt2_tiny.bin"))
    assert model.config.vocab_size == 128 and model.config.n_layer == 3
    assert_same_logits(model, source)


def test_folders_and_hub_layouts_still_load(tmp_path):
    source = source_gpt2()
    source.save_pretrained(tmp_path / "gpt2")
    converted = load_gpt2(tmp_path / "gpt2")
    assert converted.config.vocab_size == 128
    assert_same_logits(converted, source)
    converted.save_pretrained(tmp_path / "nano")
    assert load_gpt2(tmp_path / "nano", pad_vocab_to_multiple_of=None).config.vocab_size == 128


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a file that is not a GPT-2 nanogpt2 can read, what its error must say)."""
    source = source_gpt2()
    good_bin = tmp_path / "good.bin"
    write_llmc(good_bin, source, torch.float32)
    data = good_bin.read_bytes()
    files = {"truncated.bin": data[:-4], "magic.bin": b"\0" * 4 + data[4:],
             "version.bin": data[:4] + (7).to_bytes(4, "little") + data[8:], "garbage.pt": b"not a checkpoint"}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    state = linear_state(source)
    fields = build_nanogpt_fields(source)
    save_build_nanogpt(tmp_path / "conv1d.pt", linear_state(source) | {  # Conv1D layout: (in, out)
        "transformer.h.1.mlp.c_fc.weight": state["transformer.h.1.mlp.c_fc.weight"].t()}, fields)
    save_build_nanogpt(tmp_path / "no_n_head.pt", state, {k: v for k, v in fields.items() if k != "n_head"})
    save_build_nanogpt(tmp_path / "layers.pt", state, fields | {"n_layer": 3})
    save_build_nanogpt(tmp_path / "untied.pt", state | {"lm_head.weight": torch.randn(101, 16)}, fields)
    no_bias = {name: t for name, t in state.items() if not name.endswith("bias")}
    save_nanogpt(tmp_path / "no_bias.pt", no_bias, dict(fields, bias=False, dropout=0.0))
    torch.save({"transformer.wte.weight": state["transformer.wte.weight"]}, tmp_path / "pytorch_model.bin")
    expected = {"truncated.bin": "truncated", "magic.bin": "magic number 0", "version.bin": "version 7",
                "garbage.pt": "cannot read it", "conv1d.pt": r"transformer.h.1.mlp.c_fc.weight is \(16, 64\)",
                "no_n_head.pt": "n_head", "layers.pt": "n_layer=3", "untied.pt": "ties them",
                "no_bias.pt": "bias=False",
                "pytorch_model.bin": "'model' state dict", "missing.pt": "no such file"}
    return {name: (tmp_path / name, reason) for name, reason in expected.items()}


def test_bad_files_are_one_clear_error_naming_the_file(tmp_path, capsys):
    for name, (path, reason) in bad_files(tmp_path).items():
        with pytest.raises(ValueError, match=reason) as error:
            load_gpt2(str(path))
        assert str(error.value).startswith(f"{path}: "), name
        assert nanogpt2_main(["convert", "--from", str(path), "--out", str(tmp_path / "out")]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(path) in err and err.count("\n") == 1, (name, err)
        assert not (tmp_path / "out").exists()


def test_convert_from_checkpoint_writes_a_hub_folder(tmp_path, tiny_tokenizer, tiny_tokenizer_dir, capsys):
    source = source_gpt2(vocab_size=len(tiny_tokenizer))
    save_build_nanogpt(tmp_path / "model.pt", linear_state(source), build_nanogpt_fields(source))
    out = tmp_path / "nano"
    assert nanogpt2_main(["convert", "--from", str(tmp_path / "model.pt"), "--out", str(out),
                          "--tokenizer", str(tiny_tokenizer_dir)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, NanoGPT2LMHeadModel) and model.config.vocab_size == 320
    assert_same_logits(model, source)
    assert AutoTokenizer.from_pretrained(out).get_vocab() == tiny_tokenizer.get_vocab()
    # An llm.c file has no tokenizer, and a 300-token vocabulary is not GPT-2's: nothing is guessed.
    write_llmc(tmp_path / "model.bin", source, torch.float32)
    assert nanogpt2_main(["convert", "--from", str(tmp_path / "model.bin"), "--out", str(tmp_path / "llmc")]) == 0
    assert "no tokenizer saved" in capsys.readouterr().out
    assert not list((tmp_path / "llmc").glob("tokenizer*"))
    assert_same_logits(AutoModelForCausalLM.from_pretrained(tmp_path / "llmc"), source)
