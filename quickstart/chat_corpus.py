"""Conversations about Python from the documentation that ships with the interpreter, for `quickstart --chat`.

Each conversation is one question and its answer, in the Hugging Face conversational format
(`{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}`, one per line), which
`nanogpt2 prepare --format chat` reads:

* a public stdlib function, method, class or module with a docstring (found by `corpus.py`'s walk of
  the stdlib sources, never imported): "What does `json.dumps` do?" -> the docstring's first paragraph;
* a language-reference topic of `pydoc_data.topics`: "Explain the `for` statement." -> the first prose
  paragraph after its title.

Each subject is asked once, in one of a few phrasings drawn with the seed. Answers are one paragraph with
its line breaks joined, cut after the last whole sentence within `max_answer_chars` (a paragraph with no
sentence end there is skipped, as are doctests and signature lines), so a conversation fits a 256-token
context. Subjects named in backticks in `held_out` (the evaluation's prompts) are left out, so the
end-of-turn rate is measured on questions the fine-tune never saw. The output is deterministic for a
Python build and seed. License: Python's documentation, PSF-2.0, as `corpus.py`.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..utils import atomic_write
from .corpus import module_docstrings, stdlib_source_files

PHRASINGS = {  # kind of subject -> questions, "{subject}" in backticks
    "def": ["What does `{subject}` do?", "What is `{subject}` used for?", "Explain `{subject}`.",
            "Tell me what `{subject}` does."],
    "class": ["What is `{subject}`?", "What does the class `{subject}` do?", "Explain the `{subject}` class.",
              "Describe `{subject}`."],
    "module": ["What is the `{subject}` module for?", "What does the `{subject}` module do?",
               "Explain the module `{subject}`.", "Describe the `{subject}` module."],
    "topic": ["Explain {subject}.", "What does the language reference say about {subject}?",
              "Tell me about {subject}.", "Describe {subject}."],
}
PHRASINGS["async def"] = PHRASINGS["def"]
SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z]|$)")  # "e.g. the" does not end a sentence
MIN_ANSWER_WORDS = 4


@dataclass
class Conversation:
    subject: str  # what the question is about: a dotted name, or a topic's title
    kind: str  # a key of PHRASINGS
    answer: str

    def messages(self, question: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": question}, {"role": "assistant", "content": self.answer}]


def short_answer(paragraph: str, max_chars: int) -> str | None:
    """`paragraph` on one line, cut after its last whole sentence within `max_chars`; None when it is not prose
    (a doctest, a signature line, a few words) or has no sentence end within the limit."""
    text = " ".join(paragraph.split())
    if text.endswith(":"):  # it introduces a grammar block or a list, which the answer leaves out
        text = text[:-1] + "."
    if text.startswith(">>>") or "->" in text[:80] or len(text.split()) < MIN_ANSWER_WORDS:
        return None
    if len(text) <= max_chars:
        return text
    ends = [match.end() for match in SENTENCE_END.finditer(text, 0, max_chars)]
    return text[: ends[-1]] if ends else None


def docstring_conversations(max_answer_chars: int, stdlib_dir: Path | None = None) -> Iterator[Conversation]:
    """One per public (no `_` in its dotted name) stdlib module, class, function or method with a usable first
    paragraph, in module order."""
    for module, path in stdlib_source_files(stdlib_dir):
        for doc in module_docstrings(module, path):
            if any(part.startswith("_") for part in doc.name.split(".")):
                continue
            answer = short_answer(doc.text.split("\n\n")[0], max_answer_chars)
            if answer:
                yield Conversation(doc.name, doc.kind, answer)


def topic_conversations(max_answer_chars: int) -> Iterator[Conversation]:
    """One per distinct title of `pydoc_data.topics` ("else" and "if" share one), by topic name: the subject is
    the title with its quoted keyword in backticks ('The "for" statement' -> 'the `for` statement')."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions package pydoc_data separately
        return
    seen: set[str] = set()
    for name in sorted(topics):
        title, _, body = topics[name].strip().partition("\n")
        if title in seen:
            continue
        seen.add(title)
        subject = re.sub(r'"([^"]+)"', r"`\1`", title[:1].lower() + title[1:])
        for paragraph in body.split("\n\n"):
            # Skip the title's underline, grammar blocks (indented), sub-headings and version notes.
            lines = paragraph.strip("\n").split("\n")
            underlined = any(line.startswith(("***", "===", "---")) for line in lines)
            if underlined or not lines[0] or lines[0].startswith((" ", "New in", "Changed in")):
                continue
            answer = short_answer(paragraph, max_answer_chars)
            if answer:
                yield Conversation(subject, "topic", answer)
            break


def held_out_subjects(prompts: Iterable[str]) -> set[str]:
    """The names in backticks of `prompts` ("What does `json.dumps` do?" -> "json.dumps")."""
    return {name for prompt in prompts for name in re.findall(r"`([^`]+)`", prompt)}


def write_chat_corpus(
    path: str | os.PathLike[str], *, held_out: Iterable[str] = (), max_conversations: int | None = None,
    max_answer_chars: int = 300, seed: int = 0, stdlib_dir: Path | None = None,
) -> int:
    """Write the conversations to `path` (jsonl, atomically), shuffled with `seed`, at most `max_conversations`;
    return how many. A conversation whose subject, or a backticked name in it, is in `held_out` is left out."""
    held_out = set(held_out)
    conversations = [
        conversation
        for conversation in [*topic_conversations(max_answer_chars),
                             *docstring_conversations(max_answer_chars, stdlib_dir)]
        if conversation.subject not in held_out and not held_out_subjects([conversation.subject]) & held_out
    ]
    rng = random.Random(seed)
    rng.shuffle(conversations)
    conversations = conversations[:max_conversations]
    if not conversations:
        raise RuntimeError("write_chat_corpus: found no documentation to ask about in this Python installation")
    with atomic_write(path) as file:
        for conversation in conversations:
            question = rng.choice(PHRASINGS[conversation.kind]).format(subject=conversation.subject)
            file.write(json.dumps({"messages": conversation.messages(question)}, ensure_ascii=False) + "\n")
    return len(conversations)
