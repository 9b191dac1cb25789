"""Sample text from a saved model: a nanogpt2 folder (e.g. OUT/final), a plain GPT-2 folder or a Hub id.

    python scripts/generate.py --model runs/quickstart/final --prompt "The for statement"
    python scripts/generate.py --model openai-community/gpt2 --prompt "Hello, I'm a language model," \
        --max-new-tokens 40 --temperature 0.8 --top-k 50 --top-p 0.95 --num-samples 3 --seed 42

Loads with `AutoModelForCausalLM.from_pretrained(model, trust_remote_code=True)` and `AutoTokenizer`
and samples through `model.generate`. `--temperature 0` decodes greedily. Generation stops at
`--max-new-tokens` or at the end-of-text token.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

import nanogpt2.modeling  # noqa: F401  (registers the nanogpt2 model type with the Auto classes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Generate text with a causal language model.")
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or Hub id")
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate per sample")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = greedy")
    parser.add_argument("--top-k", type=int, default=50, help="sample among the k most likely tokens; 0 = all")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1.0 = off)")
    parser.add_argument("--num-samples", type=int, default=1, help="independent samples to draw")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    args = parser.parse_args(argv)
    checks = [
        (args.max_new_tokens > 0, f"--max-new-tokens must be > 0, got {args.max_new_tokens}"),
        (args.temperature >= 0, f"--temperature must be >= 0, got {args.temperature}"),
        (args.top_k >= 0, f"--top-k must be >= 0, got {args.top_k}"),
        (0 < args.top_p <= 1, f"--top-p must be in (0, 1], got {args.top_p}"),
        (args.num_samples > 0, f"--num-samples must be > 0, got {args.num_samples}"),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    return args


def generation_kwargs(args: argparse.Namespace, tokenizer: Any) -> dict[str, Any]:
    """Map the command-line sampling options onto `model.generate` keyword arguments."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": args.max_new_tokens,
        "num_return_sequences": args.num_samples,
        # GPT-2 has no pad token; padding is never needed for one prompt, this silences the warning.
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    }
    if args.temperature == 0:
        kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        if args.num_samples > 1:
            # Greedy decoding gives identical sequences; beams would give distinct ones.
            kwargs.update(num_beams=args.num_samples)
    else:
        kwargs.update(do_sample=True, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    return kwargs


def context_length(config: Any) -> int | None:
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=True)
        model = AutoModelForCausalLM.from_pretrained(args.model, trust_remote_code=True)
    except OSError as e:
        print(f"error: cannot load {args.model!r} (a model folder or Hub id): {e}", file=sys.stderr)
        return 2
    model.to(device).eval()

    input_ids = tokenizer(args.prompt, return_tensors="pt")["input_ids"].to(device)  # (1, P)
    if input_ids.shape[1] == 0:
        print("error: --prompt encodes to no tokens", file=sys.stderr)
        return 2
    limit = context_length(model.config)
    if limit is not None and input_ids.shape[1] + args.max_new_tokens > limit:
        print(
            f"error: the prompt ({input_ids.shape[1]} tokens) + --max-new-tokens ({args.max_new_tokens}) "
            f"exceeds the model's context of {limit} tokens",
            file=sys.stderr,
        )
        return 2
    if args.seed is not None:
        set_seed(args.seed)
    with torch.no_grad():
        output = model.generate(
            input_ids, attention_mask=torch.ones_like(input_ids), **generation_kwargs(args, tokenizer)
        )  # (num_samples, P + new)
    print(f"model: {args.model} ({type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} "
          f"parameters) on {device}")
    for i, sequence in enumerate(output, 1):
        new_tokens = sequence.shape[0] - input_ids.shape[1]
        print(f"\n--- sample {i}/{len(output)} ({new_tokens} new tokens) ---")
        print(tokenizer.decode(sequence, skip_special_tokens=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
