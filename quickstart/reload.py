"""Load a saved model folder as anyone downloading it would, and sample from it (or ask it a question).

    python -m nanogpt2.quickstart.reload FOLDER PROMPT
    python -m nanogpt2.quickstart.reload FOLDER QUESTION --chat [--json ANSWER.json]

The quickstart runs this in a fresh Python process, so nothing of its own process helps: the model
class comes from the folder's own code (`trust_remote_code=True`), the tokenizer from its files, and
with `--chat` the prompt from the tokenizer's own chat template and the stop tokens from the folder's
generation config.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, set_seed


def load(folder: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The folder's model (eval mode) and tokenizer, printing what was loaded."""
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    print(f"loaded {type(model).__module__}.{type(model).__name__} "
          f"({sum(p.numel() for p in model.parameters()):,} parameters) and {type(tokenizer).__name__} "
          f"({len(tokenizer):,} tokens) from {folder}")
    return model, tokenizer


def load_and_generate(folder: str, prompt: str, max_new_tokens: int = 48, num_samples: int = 2) -> list[str]:
    """Print what was loaded and `num_samples` sampled continuations of `prompt`; return the texts."""
    model, tokenizer = load(folder)
    set_seed(0)
    input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]  # (1, P)
    max_new = min(max_new_tokens, model.config.max_position_embeddings - input_ids.shape[1])
    with torch.no_grad():
        output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                                top_k=50, max_new_tokens=max_new, num_return_sequences=num_samples,
                                pad_token_id=tokenizer.eos_token_id)  # (num_samples, P + new)
    texts = tokenizer.batch_decode(output, skip_special_tokens=True)
    for i, text in enumerate(texts, 1):
        print(f"--- sample {i}/{num_samples} ---\n{text}")
    return texts


def answer_question(folder: str, question: str, max_new_tokens: int = 96) -> dict[str, Any]:
    """The greedy reply to `question` as a one-turn conversation through the folder's chat template.

    Returns the question, the prompt as the model saw it (chat markers included), the answer, and whether it
    ended with one of the generation config's end-of-sequence tokens (a chat model's end-of-turn) in budget."""
    model, tokenizer = load(folder)
    if not tokenizer.chat_template:
        raise SystemExit(f"error: the tokenizer in {folder} has no chat template")
    messages = [{"role": "user", "content": question}]
    input_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                              return_tensors="pt")["input_ids"]  # (1, P)
    stop_ids = model.generation_config.eos_token_id
    stop_ids = set(stop_ids if isinstance(stop_ids, list) else [stop_ids])
    max_new = min(max_new_tokens, model.config.max_position_embeddings - input_ids.shape[1])
    with torch.no_grad():
        output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                max_new_tokens=max_new, pad_token_id=tokenizer.eos_token_id)  # (1, P + new)
    new = output[0, input_ids.shape[1]:].tolist()
    reply = {"question": question, "prompt": tokenizer.decode(input_ids[0]),
             "answer": tokenizer.decode(new, skip_special_tokens=True).strip(),
             "ended": bool(new) and new[-1] in stop_ids, "model_class": type(model).__module__}
    print(f"User: {question}\nAssistant: {reply['answer']}")
    return reply


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("prompt", help="text to continue, or with --chat the question to answer")
    parser.add_argument("--chat", action="store_true", help="answer the prompt through the chat template")
    parser.add_argument("--json", type=Path, help="with --chat: write the answer here as JSON")
    args = parser.parse_args()
    if not args.chat:
        load_and_generate(args.folder, args.prompt)
    else:
        answered = answer_question(args.folder, args.prompt)
        if args.json:
            args.json.write_text(json.dumps(answered, ensure_ascii=False), encoding="utf-8")
