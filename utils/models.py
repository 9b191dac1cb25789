"""Load a saved causal LM and its tokenizer for inference: a nanogpt2 folder, a GPT-2 folder or a Hub id."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .. import modeling  # noqa: F401  (registers nanogpt2 with the Auto classes: no remote code needed for it)
from .errors import InputError


def context_length(config: object) -> int | None:
    """The longest sequence a model accepts, from its config (None when it does not say)."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def load_model_and_tokenizer(
    name_or_path: str, *, tokenizer: str | None = None, trust_remote_code: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """`AutoModelForCausalLM` + `AutoTokenizer` (from `tokenizer`, else the model's folder), in eval mode.

    Raises `InputError` naming the id or folder when either cannot be loaded (a typo, no such folder, or a
    Hub id that is not cached while offline).
    """
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load the model {name_or_path!r} (a model folder or Hub id): "
                         f"{str(error).splitlines()[0]}") from None
    source = tokenizer or name_or_path
    try:
        loaded_tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load the tokenizer {source!r}: {str(error).splitlines()[0]}") from None
    return model.eval(), loaded_tokenizer
