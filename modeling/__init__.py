"""nanogpt2.modeling: GPT-2 as a transformers model, registered with the Auto classes on import.

After `import nanogpt2.modeling`, `AutoConfig`, `AutoModel` and `AutoModelForCausalLM` know the
`nanogpt2` model type, and `save_pretrained` writes `auto_map` into config.json and copies this
folder's modeling files, so the saved folder loads anywhere with `trust_remote_code=True`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_nanogpt2 import NanoGPT2Config
from .convert import convert_from_hf_gpt2, convert_to_hf_gpt2, load_gpt2, padded_vocab_size
from .modeling_nanogpt2 import (
    NanoGPT2LMHeadModel,
    NanoGPT2Model,
    NanoGPT2PreTrainedModel,
)

AutoConfig.register(NanoGPT2Config.model_type, NanoGPT2Config, exist_ok=True)
AutoModel.register(NanoGPT2Config, NanoGPT2Model, exist_ok=True)
AutoModelForCausalLM.register(NanoGPT2Config, NanoGPT2LMHeadModel, exist_ok=True)
NanoGPT2Config.register_for_auto_class()
NanoGPT2Model.register_for_auto_class("AutoModel")
NanoGPT2LMHeadModel.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "NanoGPT2Config",
    "NanoGPT2Model",
    "NanoGPT2LMHeadModel",
    "NanoGPT2PreTrainedModel",
    "convert_from_hf_gpt2",
    "convert_to_hf_gpt2",
    "load_gpt2",
    "padded_vocab_size",
]
