"""Exact conversion between nanogpt2 and transformers' own `GPT2LMHeadModel` (`nanogpt2 convert` runs it).

Both directions copy the same weights under the same names: four projections are transposed and the
token embedding gains or loses its padding rows. Everything else is identical.
"""

from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedModel

from .configuration_nanogpt2 import NanoGPT2Config
from .modeling_nanogpt2 import NanoGPT2LMHeadModel

# GPT-2 stores these projections as Conv1D, weight (in, out); nanogpt2 uses nn.Linear, weight (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# Config fields with the same name and meaning in GPT2Config and NanoGPT2Config.
_SHARED_CONFIG = ("n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon", "initializer_range",
                  "embd_pdrop", "attn_pdrop", "resid_pdrop", "bos_token_id", "eos_token_id")


def padded_vocab_size(n: int, multiple: int = 64) -> int:
    """`n` rounded up to a multiple of `multiple` (GPT-2's 50257 ids -> 50304 rows): friendlier matmul shapes."""
    return -(-n // multiple) * multiple


def _check_plain_gpt2(config: GPT2Config) -> None:
    """Refuse GPT-2 variants whose computation nanogpt2 does not reproduce."""
    problems = []
    if config.activation_function not in _TANH_GELUS:
        problems.append(f"activation_function={config.activation_function!r} (needs one of {_TANH_GELUS})")
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
                            **_shared_config(hc))
    return _copy_weights(hf, NanoGPT2LMHeadModel(config), vocab_size)


def convert_to_hf_gpt2(model: NanoGPT2LMHeadModel, keep_vocab_padding: bool = False) -> GPT2LMHeadModel:
    """A transformers `GPT2LMHeadModel` (no remote code needed) with exactly this model's weights.

    The padding rows of the vocabulary are dropped unless `keep_vocab_padding`: plain GPT-2 does not
    mask them, so keeping them would let it emit ids the tokenizer cannot decode.
    """
    c = model.config
    vocab_size = c.vocab_size if keep_vocab_padding else c.num_real_tokens
    hc = GPT2Config(vocab_size=vocab_size, activation_function="gelu_new", tie_word_embeddings=True,
                    **_shared_config(c))
    return _copy_weights(model, GPT2LMHeadModel(hc), vocab_size)
