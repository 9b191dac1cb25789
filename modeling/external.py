"""Read GPT-2 weights saved by other GPT-2 trainers, without running anything from the file.

- nanoGPT (`ckpt.pt`) and build-nanogpt (`log/model_NNNNN.pt`): `torch.save` of a dict whose `model` is a state
  dict under the names nanogpt2 uses, `nn.Linear` layout (maybe with torch.compile's `_orig_mod.` prefix, and
  older nanoGPT's causal-mask buffers `attn.bias`), beside the architecture: nanoGPT's `model_args` dict, or
  build-nanogpt's `config`, a pickled `GPTConfig` dataclass.
- llm.c (`gpt2_124M.bin`, `gpt2_124M_bf16.bin`, its training checkpoints `model_NNNNNNNN.bin`): raw bytes, laid out
  as `write_model` in llm.c's `train_gpt2.py` writes them and `gpt2_build_from_checkpoint` in `train_gpt2.cu` reads
  them (`LLMC_HEADER_FIELDS`, `LLMC_TENSORS`).

Each reader returns a `ForeignGPT2`: a nanogpt2 state dict plus what the tensors' shapes cannot tell
(`convert.load_gpt2` builds the model from it). A file that is not what it claims raises ValueError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

LLMC_MAGIC = 20240326
# Header: 256 int32, of which these are set (the rest are 0); parameters follow it, all in one dtype.
LLMC_HEADER_FIELDS = ("magic", "version", "max_seq_len", "vocab_size", "num_layers", "num_heads", "channels",
                      "padded_vocab_size")
LLMC_HEADER_BYTES = 256 * 4
# version -> dtype of every parameter (llm.c accepts only these two: 3 = fp32, 5 = bf16, both with a padded vocabulary).
LLMC_DTYPES = {3: torch.float32, 5: torch.bfloat16}
# llm.c's parameter tensors in file order (`fill_in_parameter_sizes`): name, nanogpt2 name ("{}" = layer), shape in
# units of Vp = padded vocabulary, T = max_seq_len, C = channels. Per-layer tensors are stacked (L, ...) per name.
LLMC_TENSORS = (
    ("wte", "transformer.wte.weight", ("Vp", "C")),
    ("wpe", "transformer.wpe.weight", ("T", "C")),
    ("ln1w", "transformer.h.{}.ln_1.weight", ("C",)),
    ("ln1b", "transformer.h.{}.ln_1.bias", ("C",)),
    ("qkvw", "transformer.h.{}.attn.c_attn.weight", ("3C", "C")),
    ("qkvb", "transformer.h.{}.attn.c_attn.bias", ("3C",)),
    ("attprojw", "transformer.h.{}.attn.c_proj.weight", ("C", "C")),
    ("attprojb", "transformer.h.{}.attn.c_proj.bias", ("C",)),
    ("ln2w", "transformer.h.{}.ln_2.weight", ("C",)),
    ("ln2b", "transformer.h.{}.ln_2.bias", ("C",)),
    ("fcw", "transformer.h.{}.mlp.c_fc.weight", ("4C", "C")),
    ("fcb", "transformer.h.{}.mlp.c_fc.bias", ("4C",)),
    ("fcprojw", "transformer.h.{}.mlp.c_proj.weight", ("C", "4C")),
    ("fcprojb", "transformer.h.{}.mlp.c_proj.bias", ("C",)),
    ("lnfw", "transformer.ln_f.weight", ("C",)),
    ("lnfb", "transformer.ln_f.bias", ("C",)),
)
# Both nanoGPT and build-nanogpt train GPT-2's 50,257 tokens in a 50,304-row embedding (padded for speed).
GPT2_TOKENS, GPT2_PADDED_ROWS = 50257, 50304
_LAYER_NAME = re.compile(r"transformer\.h\.(\d+)\.")


@dataclass
class ForeignGPT2:
    """GPT-2 weights read from another trainer's file, under nanogpt2's names and layout."""

    state: dict[str, torch.Tensor]  # nanogpt2 names, nn.Linear (out, in); no lm_head (tied to transformer.wte)
    n_head: int
    n_real_tokens: int  # ids a tokenizer produces; embedding rows past them are padding
    dropout: float = 0.0
    exact_gelu: bool = False  # nanoGPT's nn.GELU() is erf-exact; GPT-2 and nanogpt2 use the tanh approximation


class _PickledObject:
    """What an object pickled in a checkpoint becomes instead of its class (build-nanogpt's `GPTConfig`, or
    anything else that is not a tensor or a builtin container): its fields and arguments, recorded, and no code
    of its own. Registered under each such name for torch's weights-only unpickler."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state: object) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state


def _fields(value: object) -> dict[str, object]:
    """A config's fields: a dict as it is, a pickled dataclass's recorded attributes."""
    if isinstance(value, dict):
        return value
    if isinstance(value, _PickledObject):
        return vars(value)
    return {}


def _load_weights_only(path: Path) -> object:
    """`torch.load(path, weights_only=True)`, where each class the pickle names beyond tensors and builtin types
    becomes an inert `_PickledObject` (found by scanning the pickle's opcodes, without running them)."""
    try:
        foreign_names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        with torch.serialization.safe_globals([(_PickledObject, name) for name in foreign_names]):
            # mmap: tensors (a nanoGPT checkpoint's optimizer state is twice the model) are read only when used.
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # a damaged or foreign file fails in many ways (zip, pickle, storage): say which
        raise ValueError(f"cannot read it as a PyTorch checkpoint ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None


def read_nanogpt_checkpoint(path: str | Path) -> ForeignGPT2:
    """The GPT-2 in a nanoGPT or build-nanogpt checkpoint (`torch.save({"model": ..., "config"/"model_args": ...})`)."""
    checkpoint = _load_weights_only(Path(path))
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise ValueError("not a nanoGPT / build-nanogpt checkpoint: expected a dict with a 'model' state dict "
                         "(a transformers model: pass its folder)")
    # nanoGPT: model_args (the architecture) and config (training flags); build-nanogpt: config (GPTConfig).
    nanogpt_args = _fields(checkpoint.get("model_args"))
    config = {**_fields(checkpoint.get("config")), **nanogpt_args}
    state = {}
    for name, tensor in checkpoint["model"].items():
        name = name.removeprefix("_orig_mod.")  # torch.compile's wrapper
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue  # nanoGPT's causal-mask buffer (1, 1, T, T), not a weight
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"model[{name!r}] is a {type(tensor).__name__}, not a tensor")
        state[name] = tensor
    if config.get("bias") is False or "transformer.ln_f.bias" not in state:
        raise ValueError("a model without biases (nanoGPT bias=False) is not GPT-2; nanogpt2 has GPT-2's biases")
    for name in ("transformer.wte.weight", "transformer.wpe.weight"):
        if name not in state or state[name].dim() != 2:
            raise ValueError(f"no 2-D {name!r} in its 'model' state dict")
    wte = state["transformer.wte.weight"]
    lm_head = state.pop("lm_head.weight", None)
    if lm_head is not None and not torch.equal(lm_head, wte):
        raise ValueError("lm_head.weight differs from transformer.wte.weight: GPT-2 ties them")
    if "n_head" not in config:
        raise ValueError("its config names no n_head (model_args or config), and shapes cannot tell it")
    n_layer = len({match.group(1) for name in state if (match := _LAYER_NAME.match(name))})
    shapes = {"n_layer": n_layer, "n_embd": wte.shape[1], "vocab_size": wte.shape[0],
              "block_size": state["transformer.wpe.weight"].shape[0]}
    for key, from_shapes in shapes.items():
        if key in config and config[key] != from_shapes:
            raise ValueError(f"its config says {key}={config[key]} but the weights have {from_shapes}")
    rows = wte.shape[0]
    return ForeignGPT2(
        state=state, n_head=int(config["n_head"]),
        n_real_tokens=GPT2_TOKENS if rows == GPT2_PADDED_ROWS else rows,
        dropout=float(config.get("dropout", 0.0)),
        exact_gelu=bool(nanogpt_args),  # nanoGPT's MLP: nn.GELU(); build-nanogpt's: approximate="tanh"
    )


def is_llmc_model(path: str | Path) -> bool:
    """Whether `path` starts with llm.c's model magic number."""
    with open(path, "rb") as file:
        head = file.read(4)
    return len(head) == 4 and int.from_bytes(head, "little") == LLMC_MAGIC


def read_llmc_model(path: str | Path) -> ForeignGPT2:
    """The GPT-2 in an llm.c model file (fp32 version 3 or bf16 version 5), read as raw bytes."""
    path = Path(path)
    size = path.stat().st_size
    if size < LLMC_HEADER_BYTES:
        raise ValueError(f"not an llm.c model file: {size} bytes, shorter than its {LLMC_HEADER_BYTES}-byte header")
    # The bytes, mapped from the file (int32 header, then fp32 or bf16 parameters; little-endian, as llm.c writes).
    data = torch.from_file(str(path), shared=False, size=size, dtype=torch.uint8)
    header = dict(zip(LLMC_HEADER_FIELDS, data[:LLMC_HEADER_BYTES].view(torch.int32).tolist(), strict=False))
    if header["magic"] != LLMC_MAGIC:
        raise ValueError(f"not an llm.c model file: magic number {header['magic']}, expected {LLMC_MAGIC}")
    dtype = LLMC_DTYPES.get(header["version"])
    if dtype is None:
        raise ValueError(f"llm.c model version {header['version']}: only 3 (fp32) and 5 (bf16) are read")
    T, V, L, NH, C, Vp = (header[name] for name in LLMC_HEADER_FIELDS[2:])
    if min(T, V, L, NH, C) < 1 or Vp < V or C % NH:
        raise ValueError(f"its header is not a GPT-2: {header}")
    units = {"Vp": Vp, "T": T, "C": C, "3C": 3 * C, "4C": 4 * C}
    per_layer = {name for name, target, _ in LLMC_TENSORS if "{}" in target}
    counts = [(L if name in per_layer else 1) * torch.Size([units[u] for u in shape]).numel()
              for name, _, shape in LLMC_TENSORS]
    expected = LLMC_HEADER_BYTES + sum(counts) * dtype.itemsize
    if size != expected:
        raise ValueError(f"{size} bytes, but its header ({header}) needs {expected}: truncated or not GPT-2")
    values = data[LLMC_HEADER_BYTES:].view(dtype).float()  # bf16 -> fp32 is exact
    state, start = {}, 0
    for (name, target, shape), count in zip(LLMC_TENSORS, counts, strict=True):
        tensor = values[start:start + count]
        start += count
        dims = [units[u] for u in shape]
        if name in per_layer:  # (L, *dims): one slice per block
            for layer, layer_tensor in enumerate(tensor.view(L, *dims)):
                state[target.format(layer)] = layer_tensor.clone()
        else:
            state[target] = tensor.view(*dims).clone()
    return ForeignGPT2(state=state, n_head=NH, n_real_tokens=V)
