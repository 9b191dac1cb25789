"""Fine-tune a pretrained GPT-2 on conversations (supervised fine-tuning): the pretraining loop on chat data.

    nanogpt2 prepare --format chat --source OpenAssistant/oasst1 --threads best --lang en \\
        --output-dir prepared/oasst1-en
    nanogpt2 sft --config configs/sft-oasst.yaml init_from=runs/gpt2-124m/final
    accelerate launch scripts/sft.py --config configs/sft-oasst.yaml init_from=openai-community/gpt2

The same loop, checkpoints, exact resume, trackers, plots and model card as `nanogpt2 pretrain`; what
differs is the data (conversations from `nanogpt2 prepare --format chat`: the loss is on the assistant's
words and end-of-turn token only) and the start (`init_from`: a nanogpt2 or GPT-2 folder or Hub id, a
nanoGPT .pt or an llm.c .bin). Each evaluation logs `eot_rate`, the share of replies to
`eval.chat_prompts` that end with the end-of-turn token, beside validation loss and HellaSwag.
"""

from __future__ import annotations

import argparse

from ..training import load_config
from ..utils import InputError
from . import pretrain
from .pretrain import add_arguments

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        return pretrain.run(args)
    config = load_config(args.config, args.overrides)
    if not config.init_from:
        raise InputError("init_from: sft starts from pretrained weights; set init_from=DIR_OR_HUB_ID (or a .pt / .bin)")
    return pretrain.train_and_report(config)
