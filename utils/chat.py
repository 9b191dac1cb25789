"""Talk to a saved chat model: a conversation kept within the model's context, each reply streamed.

The conversation is written with the tokenizer's chat template (`apply_chat_template(...,
add_generation_prompt=True)`), and `model.generate` stops at the end-of-sequence ids of the model's
generation config (for a nanogpt2 chat model they include the end-of-turn token `<|end|>`). Generation
runs in a thread while a `TextIteratorStreamer` hands over the reply's text as it is decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from threading import Thread
from typing import Any

import torch
from jinja2 import TemplateError
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TextIteratorStreamer

from .errors import InputError
from .models import context_length

Message = dict[str, str]


@dataclass
class ChatReply:
    text: str
    """The reply, special tokens removed and surrounding white space stripped (as kept in the history)."""
    ended: bool
    """Whether the model ended the reply itself (an end-of-sequence id) rather than running into max_new_tokens."""
    dropped_messages: int
    """How many of the oldest messages were dropped from the history so that the conversation fits the context."""


def end_of_sequence_ids(model: PreTrainedModel) -> set[int]:
    """The ids that end a reply: the generation config's `eos_token_id` (an int, a list or None)."""
    eos = model.generation_config.eos_token_id
    return set() if eos is None else {eos} if isinstance(eos, int) else set(eos)


class ChatSession:
    """One conversation with `model`: an optional system message, then alternating user and assistant turns.

    When the conversation and `max_new_tokens` no longer fit the model's context, the oldest turns are
    dropped a user message and its reply at a time; the system message always stays.
    `generate_kwargs` go to every `model.generate` call and must include `max_new_tokens`.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, system: str | None = None,
                 **generate_kwargs: Any) -> None:
        if not tokenizer.chat_template:
            raise InputError(f"the tokenizer of {model.name_or_path!r} has no chat template: it is not a chat model "
                             "(fine-tune one with `nanogpt2 sft`, or give the folder of an SFT run's final model)")
        self.model, self.tokenizer, self.generate_kwargs = model, tokenizer, generate_kwargs
        self.system: list[Message] = [{"role": "system", "content": system}] if system else []
        self.turns: list[Message] = []
        self.context = context_length(model.config)
        max_new_tokens = generate_kwargs["max_new_tokens"]
        if self.context is not None and max_new_tokens >= self.context:
            raise InputError(f"--max-new-tokens ({max_new_tokens}) leaves no room for the conversation in the "
                             f"context of {self.context} tokens of {model.name_or_path!r}")

    @property
    def messages(self) -> list[Message]:
        return [*self.system, *self.turns]

    def reset(self) -> None:
        """Start a new conversation (the system message stays)."""
        self.turns = []

    def prompt_ids(self, messages: list[Message]) -> torch.Tensor:
        """(1, P) token ids of `messages` followed by the assistant's header, as the chat template writes them."""
        try:
            encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                         return_dict=True)
        except TemplateError as error:
            raise InputError(f"the chat template of {self.model.name_or_path!r} refuses the conversation: "
                             f"{error}") from None
        return encoded["input_ids"]

    def fit_to_context(self, turns: list[Message]) -> tuple[torch.Tensor, list[Message]]:
        """The prompt (1, P) of the system message and the latest of `turns` that leave `max_new_tokens` of the
        context free, and those turns. `turns` ends with the new user message; it alone must fit."""
        budget = None if self.context is None else self.context - self.generate_kwargs["max_new_tokens"]
        while True:
            input_ids = self.prompt_ids([*self.system, *turns])
            if budget is None or input_ids.shape[1] <= budget:
                return input_ids, turns
            if len(turns) == 1:
                with_system = " with the system message" if self.system else ""
                raise InputError(f"the message is too long: {input_ids.shape[1]} tokens{with_system} + "
                                 f"--max-new-tokens {self.generate_kwargs['max_new_tokens']} exceed the context of "
                                 f"{self.context} tokens")
            turns = turns[2:]  # the oldest user message and its reply

    def send(self, text: str, on_text: Callable[[str], None] | None = None) -> ChatReply:
        """The model's reply to the user message `text`, with the whole conversation as its context; `on_text`
        receives the reply's text piece by piece as it is generated. Both join the history."""
        if not text.strip():
            raise InputError("the message is empty")
        input_ids, turns = self.fit_to_context([*self.turns, {"role": "user", "content": text}])
        new_ids = self._generate(input_ids.to(self.model.device), on_text or (lambda _: None))
        reply = self.tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        dropped = len(self.turns) + 1 - len(turns)
        self.turns = [*turns, {"role": "assistant", "content": reply}]
        ended = bool(new_ids) and new_ids[-1] in end_of_sequence_ids(self.model)
        return ChatReply(reply, ended, dropped)

    def _generate(self, input_ids: torch.Tensor, on_text: Callable[[str], None]) -> list[int]:
        """The new token ids of `model.generate(input_ids)`, run in a thread while its text streams to `on_text`."""
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict[str, Any] = {}

        def generate() -> None:
            try:
                outcome["ids"] = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                                     streamer=streamer, **self.generate_kwargs)  # (1, P + new)
            except BaseException as error:  # re-raised below; the streamer must end, or its reader waits forever
                outcome["error"] = error
                streamer.end()

        thread = Thread(target=generate, name="chat-generate", daemon=True)
        thread.start()
        for piece in streamer:
            on_text(piece)
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["ids"][0, input_ids.shape[1]:].tolist()
