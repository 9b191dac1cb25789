"""Sample text from a saved model: a nanogpt2 folder (e.g. OUT/final), a plain GPT-2 folder or a Hub id.

    nanogpt2 generate --model runs/quickstart/final --prompt "The for statement"
    nanogpt2 generate --model openai-community/gpt2 --prompt "Hello, I'm a language model," \\
        --max-new-tokens 40 --temperature 0.8 --top-k 50 --top-p 0.95 --num-samples 3 --seed 42

Loads with `AutoModelForCausalLM` / `AutoTokenizer` and samples through `model.generate`.
`--temperature 0` decodes greedily. Generation stops at `--max-new-tokens` or at the end-of-text token.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed

from ..utils import InputError
from ..utils.models import context_length, load_model_and_tokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or Hub id")
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--num-samples", type=int, default=1, help="independent samples to draw")
    add_sampling_arguments(parser, max_new_tokens=50, temperature=1.0)


def add_sampling_arguments(parser: argparse.ArgumentParser, *, max_new_tokens: int, temperature: float) -> None:
    """The sampling flags shared by `generate` and `chat`, with the verb's defaults."""
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help="most tokens generated")
    parser.add_argument("--temperature", type=float, default=temperature, help="softmax temperature; 0 = greedy")
    parser.add_argument("--top-k", type=int, default=50, help="sample among the k most likely tokens; 0 = all")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1.0 = off)")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def check_flags(args: argparse.Namespace) -> None:
    """The flags' ranges, checked before a model is loaded."""
    checks = [
        (args.max_new_tokens > 0, f"--max-new-tokens must be > 0, got {args.max_new_tokens}"),
        (args.temperature >= 0, f"--temperature must be >= 0, got {args.temperature}"),
        (args.top_k >= 0, f"--top-k must be >= 0, got {args.top_k}"),
        (0 < args.top_p <= 1, f"--top-p must be in (0, 1], got {args.top_p}"),
        (args.num_samples > 0, f"--num-samples must be > 0, got {args.num_samples}"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def generation_kwargs(args: argparse.Namespace, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The command-line sampling options as `model.generate` keyword arguments."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": args.max_new_tokens,
        "num_return_sequences": args.num_samples,
        # GPT-2 has no pad token; padding is never needed for one prompt, this silences the warning.
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    }
    if args.temperature == 0:
        kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        if args.num_samples > 1:  # greedy decoding gives identical sequences; beams give distinct ones
            kwargs.update(num_beams=args.num_samples)
    else:
        kwargs.update(do_sample=True, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    return kwargs


def sample(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, **kwargs: Any) -> list[str]:
    """The decoded samples (prompt included) of `model.generate(**kwargs)`; InputError when the prompt
    is empty or does not leave room for `max_new_tokens` in the model's context."""
    input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(model.device)  # (1, P)
    if input_ids.shape[1] == 0:
        raise InputError("--prompt encodes to no tokens")
    limit = context_length(model.config)
    if limit is not None and input_ids.shape[1] + kwargs["max_new_tokens"] > limit:
        raise InputError(f"--prompt ({input_ids.shape[1]} tokens) + --max-new-tokens ({kwargs['max_new_tokens']}) "
                         f"exceeds the context of {limit} tokens of the model")
    with torch.no_grad():
        output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)  # (N, P + new)
    return tokenizer.batch_decode(output, skip_special_tokens=True)


def run(args: argparse.Namespace) -> int:
    check_flags(args)
    model, tokenizer = load_model_and_tokenizer(args.model, trust_remote_code=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    if args.seed is not None:
        set_seed(args.seed)
    texts = sample(model, tokenizer, args.prompt, **generation_kwargs(args, tokenizer))
    print(f"model: {args.model} ({type(model).__name__}, {model.num_parameters():,} parameters) on {device}")
    for i, text in enumerate(texts, 1):
        print(f"\n--- sample {i}/{len(texts)} ---\n{text}")
    return 0
