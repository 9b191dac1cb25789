"""Replies of a chat model to fixed prompts, and how often they end properly (the end-of-turn rate).

A supervised fine-tune on conversations teaches the model to end its reply with `<|end|>`; a model that
has not learnt it runs on until `max_new_tokens`. The end-of-turn rate is the fraction of greedy replies
to fixed prompts that emit the end-of-turn token within `max_new_tokens`: the first sign an SFT worked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data.chat_template import END_OF_TURN


@dataclass
class Reply:
    prompt: str
    text: str
    ended: bool
    """Whether the reply ended with the end-of-turn token within the token budget."""


@torch.no_grad()
def chat_replies(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *,
                 max_new_tokens: int, system: str | None = None, synced_gpus: bool = False) -> list[Reply]:
    """Greedy reply to each prompt as a one-turn conversation, through the tokenizer's chat template.

    Greedy decoding makes the rate a property of the model, not of a sampling seed, and leaves the
    random state untouched. The model's training mode is restored afterwards. `synced_gpus=True` when
    the model is sharded over processes (FSDP): each keeps running forwards until all have finished."""
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    replies = []
    for prompt in prompts:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"].to(device)  # (1, P)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=[end_id, tokenizer.eos_token_id],
                             pad_token_id=tokenizer.eos_token_id, synced_gpus=synced_gpus)
        new = out[0, ids.shape[1]:].tolist()  # (new,)
        replies.append(Reply(prompt, tokenizer.decode(new, skip_special_tokens=True).strip(), end_id in new))
    model.train(was_training)
    return replies


def end_of_turn_rate(replies: list[Reply]) -> float:
    return sum(reply.ended for reply in replies) / max(1, len(replies))
