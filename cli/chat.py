"""Talk to a chat model: an SFT run's final folder, its plain GPT-2 export or a Hub id with a chat template.

    nanogpt2 chat --model runs/sft-oasst/final
    nanogpt2 chat --model runs/sft-oasst/final --system "You are a helpful assistant." --seed 0
    nanogpt2 chat --model runs/sft-oasst/final --prompt "What is a list comprehension?" --temperature 0

Without --prompt it is a conversation on stdin: type a message and Enter, and the reply streams as it is
generated. The model sees the whole conversation; when it no longer fits the context the oldest turns are
dropped (a note says so) and the system message stays. Commands, alone on a line:
    /reset   start a new conversation
    /exit    end (as does Ctrl-D, the end of stdin)
With --prompt it answers that one message and exits; only the reply goes to stdout (notes go to stderr).

The conversation is written with the tokenizer's chat template, and a reply ends at an end-of-sequence id
of the model's generation config (`<|end|>` for a nanogpt2 chat model) or at --max-new-tokens. Sampling
flags are those of `nanogpt2 generate`; the defaults are those of nanochat's chat CLI (temperature 0.6,
top-k 50, 256 new tokens); --temperature 0 answers greedily.
"""

from __future__ import annotations

import argparse
import sys

import torch
from transformers import set_seed

from ..utils import InputError
from ..utils.chat import ChatSession
from ..utils.models import load_model_and_tokenizer
from .generate import add_sampling_arguments, check_flags, generation_kwargs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="chat model folder (save_pretrained) or Hub id")
    parser.add_argument("--system", default=None, help="system message that opens the conversation")
    parser.add_argument("--prompt", default=None, help="answer this one message, print the reply and exit")
    add_sampling_arguments(parser, max_new_tokens=256, temperature=0.6)  # nanochat's chat_cli defaults
    parser.set_defaults(num_samples=1)  # one reply per message, for generate's flag helpers


def note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


def answer(session: ChatSession, message: str) -> None:
    """Stream the reply to `message` to stdout, then say on stderr what was dropped or cut."""
    reply = session.send(message, on_text=lambda text: print(text, end="", flush=True))
    print(flush=True)
    if reply.dropped_messages:
        note(f"dropped the {reply.dropped_messages} oldest messages: the conversation no longer fit the context "
             f"of {session.context} tokens")
    if not reply.ended:
        note(f"the reply was cut at --max-new-tokens {session.generate_kwargs['max_new_tokens']}")


def converse(session: ChatSession) -> int:
    """The conversation on stdin: a message per line, /reset, /exit; the end of stdin or Ctrl-C ends it too."""
    prompt = "you> " if sys.stdin.isatty() else ""
    try:
        while (line := input(prompt).strip()) != "/exit":
            if line == "/reset":
                session.reset()
                note("new conversation")
            elif line:
                try:
                    answer(session, line)
                except InputError as error:  # a message too long for the context: the conversation goes on
                    print(f"error: {error}", file=sys.stderr, flush=True)
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    check_flags(args)
    model, tokenizer = load_model_and_tokenizer(args.model, trust_remote_code=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    session = ChatSession(model.to(device), tokenizer, system=args.system, **generation_kwargs(args, tokenizer))
    if args.seed is not None:
        set_seed(args.seed)
    if args.prompt is not None:
        answer(session, args.prompt)
        return 0
    print(f"chatting with {args.model} ({type(model).__name__}, {model.num_parameters():,} parameters) on {device}: "
          "/reset starts a new conversation, /exit or Ctrl-D ends", file=sys.stderr, flush=True)
    return converse(session)
