"""Exact conversion between nanogpt2 and transformers' own `GPT2LMHeadModel`.

    # OpenAI's GPT-2 (or any GPT-2 folder) -> nanogpt2, vocabulary padded to a multiple of 64
    python -m nanogpt2.modeling.convert --from-hf openai-community/gpt2 --out gpt2-nanogpt2 --pad-vocab 64
    # nanogpt2 -> a plain GPT-2 folder that needs no remote code (vLLM, TGI, llama.cpp's converter)
    python -m nanogpt2.modeling.convert --to-hf runs/gpt2-124m/final --out gpt2-plain

A tokenizer found in the source folder is saved beside the converted weights.
"""

import argparse
from pathlib import Path

import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from .configuration_nanogpt2 import NanoGPT2Config
from .modeling_nanogpt2 import NanoGPT2LMHeadModel

# GPT-2 stores these projections as Conv1D, weight (in, out); nanogpt2 uses nn.Linear, weight (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


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


def _pad_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """Append zero rows to an embedding matrix (V, C) -> (rows, C); padding ids are never predicted."""
    if rows == weight.shape[0]:
        return weight
    return torch.cat([weight, weight.new_zeros(rows - weight.shape[0], weight.shape[1])])


def convert_from_hf_gpt2(
    model_or_path: GPT2LMHeadModel | str | Path,
    pad_vocab_to_multiple_of: int | None = None,
    **from_pretrained_kwargs,
) -> NanoGPT2LMHeadModel:
    """A `NanoGPT2LMHeadModel` with exactly the weights of a transformers GPT-2.

    Args:
        model_or_path: a `GPT2LMHeadModel`, or a folder / Hub id it loads from (e.g. `openai-community/gpt2`).
        pad_vocab_to_multiple_of: pad the embedding to a multiple of this (64 turns 50257 into 50304);
            the padded ids are masked out of the logits, so outputs over the real vocabulary are unchanged.
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
    vocab_size = n_real
    if pad_vocab_to_multiple_of:
        vocab_size = -(-n_real // pad_vocab_to_multiple_of) * pad_vocab_to_multiple_of
    config = NanoGPT2Config(
        vocab_size=vocab_size,
        n_positions=hc.n_positions,
        n_embd=hc.n_embd,
        n_layer=hc.n_layer,
        n_head=hc.n_head,
        n_inner=hc.n_inner,
        layer_norm_epsilon=hc.layer_norm_epsilon,
        initializer_range=hc.initializer_range,
        embd_pdrop=hc.embd_pdrop,
        attn_pdrop=hc.attn_pdrop,
        resid_pdrop=hc.resid_pdrop,
        tokenizer_vocab_size=n_real if vocab_size != n_real else None,
        bos_token_id=hc.bos_token_id,
        eos_token_id=hc.eos_token_id,
    )
    state = {}
    for name, tensor in hf.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to transformer.wte.weight
        if name.endswith(_CONV1D_SUFFIXES):
            tensor = tensor.t()
        if name == "transformer.wte.weight":
            tensor = _pad_rows(tensor, vocab_size)
        state[name] = tensor.detach().clone().contiguous()
    model = NanoGPT2LMHeadModel(config).to(dtype=hf.dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise ValueError(f"weight names do not match: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model.eval() if not hf.training else model


def convert_to_hf_gpt2(model: NanoGPT2LMHeadModel, keep_vocab_padding: bool = False) -> GPT2LMHeadModel:
    """A transformers `GPT2LMHeadModel` (no remote code needed) with exactly this model's weights.

    The padding rows of the vocabulary are dropped unless `keep_vocab_padding`: plain GPT-2 does not
    mask them, so keeping them would let it emit ids the tokenizer cannot decode.
    """
    c = model.config
    vocab_size = c.vocab_size if keep_vocab_padding else c.num_real_tokens
    hc = GPT2Config(
        vocab_size=vocab_size,
        n_positions=c.n_positions,
        n_embd=c.n_embd,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_inner=c.n_inner,
        activation_function="gelu_new",
        layer_norm_epsilon=c.layer_norm_epsilon,
        initializer_range=c.initializer_range,
        embd_pdrop=c.embd_pdrop,
        attn_pdrop=c.attn_pdrop,
        resid_pdrop=c.resid_pdrop,
        bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
        tie_word_embeddings=True,
    )
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        if name.endswith(_CONV1D_SUFFIXES):
            tensor = tensor.t()
        if name == "transformer.wte.weight":
            tensor = tensor[:vocab_size]
        state[name] = tensor.detach().clone().contiguous()
    hf = GPT2LMHeadModel(hc).to(dtype=model.dtype)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise ValueError(f"weight names do not match: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    return hf.eval() if not model.training else hf


def _copy_tokenizer(src: str, out: Path) -> bool:
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError):
        return False
    tokenizer.save_pretrained(out)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from-hf", metavar="DIR_OR_HUB_ID", help="GPT-2 checkpoint to convert to nanogpt2")
    direction.add_argument("--to-hf", metavar="DIR", help="nanogpt2 checkpoint to convert to plain GPT-2")
    parser.add_argument("--out", required=True, type=Path, help="output folder (save_pretrained)")
    parser.add_argument("--pad-vocab", type=int, default=None, metavar="N",
                        help="--from-hf: pad the vocabulary to a multiple of N (64 gives 50304 for GPT-2)")
    parser.add_argument("--keep-vocab-padding", action="store_true",
                        help="--to-hf: keep padded vocabulary rows (plain GPT-2 would then be able to emit them)")
    args = parser.parse_args(argv)

    if args.from_hf:
        model = convert_from_hf_gpt2(args.from_hf, pad_vocab_to_multiple_of=args.pad_vocab)
        source = args.from_hf
    else:
        model = convert_to_hf_gpt2(
            NanoGPT2LMHeadModel.from_pretrained(args.to_hf), keep_vocab_padding=args.keep_vocab_padding
        )
        source = args.to_hf
    model.save_pretrained(args.out)
    had_tokenizer = _copy_tokenizer(source, args.out)
    print(f"wrote {type(model).__name__} ({model.num_parameters():,} parameters) to {args.out}"
          + (" with its tokenizer" if had_tokenizer else " (no tokenizer found in the source)"))


if __name__ == "__main__":
    main()
