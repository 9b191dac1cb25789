"""Exact conversion between nanogpt2 and transformers' own `GPT2LMHeadModel`, and `load_gpt2`, which starts
nanogpt2 from any GPT-2 a user has (`nanogpt2 convert` and the Trainer's `init_from` run them).

Both directions copy the same weights under the same names: four projections are transposed and the
token embedding gains or loses its padding rows. Everything else is identical. Files of other trainers
(nanoGPT, build-nanogpt, llm.c) are read by `external.py`.
"""

import copy
import zipfile
from pathlib import Path

import torch
from transformers import AutoConfig, GPT2Config, GPT2LMHeadModel, PreTrainedModel

from .configuration_nanogpt2 import NanoGPT2Config
from .external import GPT2_TOKENS, ForeignGPT2, is_llmc_model, read_llmc_model, read_nanogpt_checkpoint
from .modeling_nanogpt2 import NanoGPT2LMHeadModel

# GPT-2 stores these projections as Conv1D, weight (in, out); nanogpt2 uses nn.Linear, weight (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# Files (not folders) that `load_gpt2` reads: nanoGPT / build-nanogpt checkpoints and llm.c model files.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
# Config fields with the same name and meaning in GPT2Config and NanoGPT2Config.
_SHARED_CONFIG = ("n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon", "initializer_range",
                  "embd_pdrop", "attn_pdrop", "resid_pdrop", "bos_token_id", "eos_token_id")


def padded_vocab_size(n: int, multiple: int = 64) -> int:
    """`n` rounded up to a multiple of `multiple` (GPT-2's 50257 ids -> 50304 rows): friendlier matmul shapes."""
    return -(-n // multiple) * multiple


def _check_plain_gpt2(config: GPT2Config) -> None:
    """Refuse GPT-2 variants whose computation nanogpt2 does not reproduce."""
    problems = []
    if config.activation_function not in (*_TANH_GELUS, "gelu"):
        problems.append(f"activation_function={config.activation_function!r} (needs gelu or one of {_TANH_GELUS})")
    if getattr(config, "add_cross_attention", False):
        problems.append("add_cross_attention=True")
    if not getattr(config, "scale_attn_weights", True):
        problems.append("scale_attn_weights=False")
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        problems.append("scale_attn_by_inverse_layer_idx=True")
    if problems:
        raise ValueError("cannot convert this GPT-2 variant exactly: " + ", ".join(problems))


def _shared_config(config: GPT2Config | NanoGPT2Config) -> dict[str, object]:
    return {name: getattr(config, name) for name in _SHARED_CONFIG}


def _copy_weights(source: PreTrainedModel, target: PreTrainedModel, vocab_rows: int) -> PreTrainedModel:
    """Load `source`'s weights into `target` (same names), the embedding cut or zero-padded to `vocab_rows`."""
    state = {}
    for name, tensor in source.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to transformer.wte.weight
        if name.endswith(_CONV1D_SUFFIXES):
            tensor = tensor.t()
        if name == "transformer.wte.weight":  # (V, C) -> (vocab_rows, C): padding rows dropped or zeros appended
            tensor = tensor[:vocab_rows]
            tensor = torch.cat([tensor, tensor.new_zeros(vocab_rows - len(tensor), tensor.shape[1])])
        state[name] = tensor.detach().clone().contiguous()
    target = target.to(dtype=source.dtype)
    missing, unexpected = target.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise ValueError(f"weight names do not match: missing {missing}, unexpected {unexpected}")
    target.tie_weights()
    # Generation defaults travel too: a chat model's eos_token_id lists the end-of-turn id beside <|endoftext|>.
    target.generation_config = copy.deepcopy(source.generation_config)
    return target.train(source.training)


def convert_from_hf_gpt2(
    model_or_path: GPT2LMHeadModel | str | Path,
    pad_vocab_to_multiple_of: int | None = None,
    **from_pretrained_kwargs,
) -> NanoGPT2LMHeadModel:
    """A `NanoGPT2LMHeadModel` with exactly the weights of a transformers GPT-2.

    Args:
        model_or_path: a `GPT2LMHeadModel`, or a folder / Hub id it loads from (e.g. `openai-community/gpt2`).
        pad_vocab_to_multiple_of: pad the embedding to a multiple of this (`padded_vocab_size`); the padded
            ids are masked out of the logits, so outputs over the real vocabulary are unchanged.
        from_pretrained_kwargs: passed to `GPT2LMHeadModel.from_pretrained` when a path is given.
    """
    if isinstance(model_or_path, (str, Path)):
        hf = GPT2LMHeadModel.from_pretrained(str(model_or_path), **from_pretrained_kwargs)
    elif isinstance(model_or_path, GPT2LMHeadModel):
        hf = model_or_path
    else:
        raise TypeError(f"expected a GPT2LMHeadModel or a path / Hub id, got {type(model_or_path).__name__}")
    hc = hf.config
    _check_plain_gpt2(hc)
    n_real = hc.vocab_size
    vocab_size = padded_vocab_size(n_real, pad_vocab_to_multiple_of) if pad_vocab_to_multiple_of else n_real
    config = NanoGPT2Config(vocab_size=vocab_size, tokenizer_vocab_size=n_real if vocab_size != n_real else None,
                            activation_function="gelu" if hc.activation_function == "gelu" else "gelu_new",
                            **_shared_config(hc))
    return _copy_weights(hf, NanoGPT2LMHeadModel(config), vocab_size)


def convert_to_hf_gpt2(model: NanoGPT2LMHeadModel, keep_vocab_padding: bool = False) -> GPT2LMHeadModel:
    """A transformers `GPT2LMHeadModel` (no remote code needed) with exactly this model's weights.

    The padding rows of the vocabulary are dropped unless `keep_vocab_padding`: plain GPT-2 does not
    mask them, so keeping them would let it emit ids the tokenizer cannot decode.
    """
    c = model.config
    vocab_size = c.vocab_size if keep_vocab_padding else c.num_real_tokens
    hc = GPT2Config(vocab_size=vocab_size, activation_function=c.activation_function, tie_word_embeddings=True,
                    **_shared_config(c))
    return _copy_weights(model, GPT2LMHeadModel(hc), vocab_size)


def _from_foreign(foreign: ForeignGPT2, pad_vocab_to_multiple_of: int | None) -> NanoGPT2LMHeadModel:
    """A nanogpt2 model with the weights another trainer saved; the architecture is read off the tensors' shapes."""
    state = dict(foreign.state)
    wte = state["transformer.wte.weight"]  # (rows, C)
    rows, n_embd = wte.shape
    vocab_size = padded_vocab_size(rows, pad_vocab_to_multiple_of) if pad_vocab_to_multiple_of else rows
    state["transformer.wte.weight"] = torch.cat([wte, wte.new_zeros(vocab_size - rows, n_embd)])
    # GPT-2's <|endoftext|> (50256) starts and ends text; another vocabulary (nanoGPT's characters) has none.
    endoftext = GPT2_TOKENS - 1 if foreign.n_real_tokens == GPT2_TOKENS else None
    fc = state.get("transformer.h.0.mlp.c_fc.weight")  # (n_inner, C)
    config = NanoGPT2Config(
        vocab_size=vocab_size, n_positions=state["transformer.wpe.weight"].shape[0], n_embd=n_embd,
        n_layer=sum(name.endswith(".ln_1.weight") for name in state), n_head=foreign.n_head,
        n_inner=None if fc is None or fc.shape[0] == 4 * n_embd else fc.shape[0],
        tokenizer_vocab_size=foreign.n_real_tokens if foreign.n_real_tokens != vocab_size else None,
        embd_pdrop=foreign.dropout, attn_pdrop=foreign.dropout, resid_pdrop=foreign.dropout,
        bos_token_id=endoftext, eos_token_id=endoftext,
        activation_function="gelu" if foreign.exact_gelu else "gelu_new",
    )
    model = NanoGPT2LMHeadModel(config)
    expected = {name: tensor.shape for name, tensor in model.state_dict().items() if name != "lm_head.weight"}
    problems = [f"missing {name}" for name in expected if name not in state]
    problems += [f"unexpected {name}" for name in state if name not in expected]
    problems += [f"{name} is {tuple(state[name].shape)}, GPT-2 needs {tuple(shape)}"
                 for name, shape in expected.items() if name in state and state[name].shape != shape]
    if problems:
        raise ValueError(f"not a GPT-2 of {config.n_layer} layers x {n_embd}: " + "; ".join(problems[:3])
                         + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""))
    model.load_state_dict({name: tensor.float() for name, tensor in state.items()}, strict=False)
    model.tie_weights()
    return model.eval()


def load_gpt2(source: str | Path, *, pad_vocab_to_multiple_of: int | None = 64) -> NanoGPT2LMHeadModel:
    """A nanogpt2 model (fp32) with exactly the weights of `source`, whatever saved it:

    - a nanogpt2 folder or Hub id: loaded as it is;
    - a transformers `GPT2LMHeadModel` folder or Hub id (`openai-community/gpt2`): converted;
    - a nanoGPT / build-nanogpt checkpoint (`ckpt.pt`, `model_19072.pt`): read with `weights_only=True`
      (nanoGPT's exact GELU is kept: `activation_function="gelu"`);
    - an llm.c model file (`gpt2_124M.bin`, fp32 or bf16): read as raw bytes.

    Imported vocabularies are padded to a multiple of `pad_vocab_to_multiple_of` (None: as they are), the real
    token count kept as `tokenizer_vocab_size` so padded ids are never predicted. A 50,304-row checkpoint from
    nanoGPT / build-nanogpt is GPT-2's 50,257 tokens plus padding; llm.c files say both counts.

    Raises ValueError (naming `source`) for a file that is not one of these or whose shapes are not a GPT-2, and
    OSError for a folder or Hub id that cannot be loaded.
    """
    path = Path(source)
    if path.is_file():
        try:
            # llm.c files and PyTorch's (a zip archive) both end in .bin: tell them apart by their first bytes.
            is_llmc = is_llmc_model(path) or (path.suffix == ".bin" and not zipfile.is_zipfile(path))
            foreign = read_llmc_model(path) if is_llmc else read_nanogpt_checkpoint(path)
            model = _from_foreign(foreign, pad_vocab_to_multiple_of)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None
        return model
    if path.suffix in CHECKPOINT_SUFFIXES:
        raise ValueError(f"{source}: no such file")
    config = AutoConfig.from_pretrained(str(source))
    if config.model_type == NanoGPT2Config.model_type:
        return NanoGPT2LMHeadModel.from_pretrained(str(source), dtype=torch.float32)
    if config.model_type == "gpt2":
        return convert_from_hf_gpt2(str(source), pad_vocab_to_multiple_of, dtype=torch.float32)
    raise ValueError(f"{source} is a {config.model_type!r} model, not GPT-2")
