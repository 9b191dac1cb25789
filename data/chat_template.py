"""The chat format: role and end-of-turn markers as special tokens, and the Jinja template that uses them.

    <|endoftext|><|system|>\n{system}<|end|>\n<|user|>\n{question}<|end|>\n<|assistant|>\n{answer}<|end|>\n

The markers are special tokens, so ordinary text can never produce them. Added to GPT-2's 50,257-token
vocabulary they take ids 50257-50260: rows the model already has (its embedding is padded to 50,304),
so nothing is resized. The assistant's words and its `<|end|>` sit inside `{% generation %}`, so
`apply_chat_template(..., return_assistant_tokens_mask=True)` marks exactly the tokens the loss is on;
`<|end|>` is an end-of-sequence id of the model's generation config, so `generate` stops after a reply.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

ROLES = ("system", "user", "assistant")
END_OF_TURN = "<|end|>"
ROLE_TOKENS = {role: f"<|{role}|>" for role in ROLES}
CHAT_TOKENS = (*ROLE_TOKENS.values(), END_OF_TURN)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('unknown role ' ~ message['role'] ~ ': expected system, user or assistant') }}"
    "{%- endif -%}"
    "{{ '<|' ~ message['role'] ~ '|>\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] ~ '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ message['content'] ~ '<|end|>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)


def add_chat_template(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Give `tokenizer` the chat markers (as special tokens, if it lacks them) and the chat template, in
    place; return the ids of the end-of-text and end-of-turn tokens (the model's end-of-sequence ids)."""
    missing = [token for token in CHAT_TOKENS if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    return [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)]
