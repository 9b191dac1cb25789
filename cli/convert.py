"""Convert any GPT-2 into a Hub-ready nanogpt2 folder, or nanogpt2 into a plain GPT2LMHeadModel, exactly.

    # whatever SOURCE is: a nanogpt2 or GPT-2 folder / Hub id, a nanoGPT or build-nanogpt .pt, an llm.c .bin
    nanogpt2 convert --from openai-community/gpt2 --out gpt2-nanogpt2
    nanogpt2 convert --from out/ckpt.pt --out gpt2-nanogpt                 # nanoGPT's train.py
    nanogpt2 convert --from log/model_19072.pt --out gpt2-build-nanogpt    # build-nanogpt's train_gpt2.py
    nanogpt2 convert --from gpt2_124M.bin --out gpt2-llmc                  # llm.c
    # nanogpt2 -> a plain GPT-2 folder that needs no remote code (transformers serve, vLLM, llama.cpp's converter)
    nanogpt2 convert --to-hf runs/sft-oasst/final --out gpt2-chat-plain

The vocabulary is padded to a multiple of --pad-vocab (64: GPT-2's 50,257 ids -> 50,304 rows); padded ids are
never predicted. The tokenizer saved beside the weights is --tokenizer, else the one in SOURCE's folder; a .pt or
.bin has none, so GPT-2's (openai-community/gpt2) is saved when its vocabulary is GPT-2's and it can be loaded.
--to-hf keeps what a chat model needs: the rows of every real token (chat markers included), the tokenizer with
its chat template and the generation config's end-of-sequence ids.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..modeling import NanoGPT2LMHeadModel, convert_to_hf_gpt2, load_gpt2
from ..modeling.external import GPT2_TOKENS
from ..utils import InputError

GPT2_TOKENIZER = "openai-community/gpt2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", "--from-hf", dest="source", metavar="SOURCE",
                           help="GPT-2 to convert to nanogpt2: a nanogpt2 or GPT-2 folder or Hub id, a nanoGPT / "
                                "build-nanogpt checkpoint (.pt) or an llm.c model file (.bin)")
    direction.add_argument("--to-hf", metavar="DIR_OR_HUB_ID", help="nanogpt2 model to convert to plain GPT-2")
    parser.add_argument("--out", required=True, type=Path, help="output folder (save_pretrained)")
    parser.add_argument("--tokenizer", metavar="DIR_OR_HUB_ID",
                        help="tokenizer to save beside the model (default: SOURCE's own)")
    parser.add_argument("--pad-vocab", type=int, default=64, metavar="N",
                        help="--from: pad the vocabulary to a multiple of N (default 64; 1 keeps it as it is)")
    parser.add_argument("--keep-vocab-padding", action="store_true",
                        help="--to-hf: keep padded vocabulary rows (plain GPT-2 would then be able to emit them)")


def _load_tokenizer(name: str) -> PreTrainedTokenizerBase | None:
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError):  # no tokenizer there, or a Hub id not cached while offline
        return None


def _tokenizer_for(args: argparse.Namespace, source: str, model: PreTrainedModel) -> tuple[
        PreTrainedTokenizerBase | None, str]:
    """The tokenizer to save beside `model`, and where it came from (or why there is none)."""
    if args.tokenizer:
        tokenizer = _load_tokenizer(args.tokenizer)
        if tokenizer is None:
            raise InputError(f"--tokenizer {args.tokenizer!r}: cannot load a tokenizer from it")
        origin = args.tokenizer
    elif not Path(source).is_file():
        tokenizer, origin = _load_tokenizer(source), source
    elif getattr(model.config, "tokenizer_vocab_size", None) == GPT2_TOKENS:
        tokenizer, origin = _load_tokenizer(GPT2_TOKENIZER), GPT2_TOKENIZER
    else:
        return None, f"no tokenizer saved ({source} has none and its vocabulary is not GPT-2's: pass --tokenizer)"
    if tokenizer is None:
        return None, f"no tokenizer saved (none loads from {origin}: pass --tokenizer)"
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise InputError(f"the tokenizer from {origin} has {len(tokenizer)} ids, more than the model's {rows} "
                         f"embedding rows")
    return tokenizer, f"with the tokenizer of {origin}"


def run(args: argparse.Namespace) -> int:
    if args.pad_vocab < 1:
        raise InputError(f"--pad-vocab must be >= 1, got {args.pad_vocab}")
    source = args.source or args.to_hf
    try:
        if args.source:
            model = load_gpt2(source, pad_vocab_to_multiple_of=args.pad_vocab)
        else:
            model = convert_to_hf_gpt2(NanoGPT2LMHeadModel.from_pretrained(source),
                                       keep_vocab_padding=args.keep_vocab_padding)
    except (OSError, ValueError) as error:  # no such file, folder or Hub id (or not cached offline), not a GPT-2
        reason = str(error).splitlines()[0]
        raise InputError(f"cannot convert {source!r}: {reason}") from None
    tokenizer, tokenizer_note = _tokenizer_for(args, source, model)
    model.save_pretrained(args.out)
    if tokenizer is not None:
        tokenizer.save_pretrained(args.out)  # with chat_template.jinja when it has a chat template
    print(f"wrote {type(model).__name__} ({model.num_parameters():,} parameters) to {args.out} {tokenizer_note}")
    return 0
