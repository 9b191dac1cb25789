"""Load a saved model folder as anyone downloading it would, and sample from it.

    python -m nanogpt2.quickstart.reload FOLDER PROMPT

The quickstart runs this in a fresh Python process, so nothing of its own process helps: the model
class comes from the folder's own code (`trust_remote_code=True`), the tokenizer from its files.
"""

from __future__ import annotations

import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed


def load_and_generate(folder: str, prompt: str, max_new_tokens: int = 48, num_samples: int = 2) -> list[str]:
    """Print what was loaded and `num_samples` sampled continuations of `prompt`; return the texts."""
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    print(f"loaded {type(model).__module__}.{type(model).__name__} "
          f"({sum(p.numel() for p in model.parameters()):,} parameters) and {type(tokenizer).__name__} "
          f"({len(tokenizer):,} tokens) from {folder}")
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


if __name__ == "__main__":
    load_and_generate(*sys.argv[1:3])
