"""The quickstart's tokenizer: GPT-2's when it can be loaded, else a GPT-2-style BPE trained on the corpus."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..data import DEFAULT_TOKENIZER, load_tokenizer, train_byte_level_bpe
from ..utils import InputError

TRAINED = "trained on the corpus"


@dataclass
class TokenizerChoice:
    """Which tokenizer a run uses, and why."""

    source: str  # the folder or Hub id it was loaded from, or TRAINED
    vocab_size: int
    reason: str = ""  # why one was trained ("" when it was loaded)

    def __str__(self) -> str:
        loaded = f"{self.source} ({self.vocab_size:,} tokens)"
        return f"a GPT-2-style byte-level BPE {loaded}, because {self.reason}" if self.reason else loaded


def hub_reachable(timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether the Hub answers quickly (and why not); avoids transformers' long retry loop when it does not."""
    if constants.HF_HUB_OFFLINE:
        return False, "HF_HUB_OFFLINE is set"
    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout_s)
    except urllib.error.HTTPError:
        return True, ""  # it answered
    except Exception as error:  # DNS failure, refused, timeout
        return False, f"{constants.ENDPOINT} is not reachable: {type(error).__name__}: {error}"
    return True, ""


def load_pretrained_tokenizer(source: str) -> PreTrainedTokenizerBase:
    """A tokenizer from a folder or a Hub id: the local cache first, the Hub only when it answers.

    Raises `InputError` naming `source` when it cannot be loaded."""
    if Path(source).expanduser().is_dir():
        return load_tokenizer(Path(source).expanduser())
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):  # not cached (or not a valid repo id): try the Hub below
        pass
    reachable, why = hub_reachable()
    if not reachable:
        raise InputError(f"cannot load the tokenizer {source!r}: it is not a folder, not in the local cache, and "
                         f"the Hub cannot be used ({why})")
    return load_tokenizer(source)


def choose_tokenizer(
    preference: str, corpus: Iterable[str] | None = None, vocab_size: int = 8192
) -> tuple[PreTrainedTokenizerBase, TokenizerChoice]:
    """The run's tokenizer for `preference`, and what it is.

    * "auto": GPT-2's (`DEFAULT_TOKENIZER`) when it can be loaded, else a byte-level BPE of `vocab_size`
      trained on `corpus` (texts, read only when training);
    * "train": always train on `corpus`;
    * a folder or Hub id: exactly that tokenizer (`InputError` naming it when it cannot be loaded).
    """
    if preference not in ("auto", "train"):
        tokenizer = load_pretrained_tokenizer(preference)
        return tokenizer, TokenizerChoice(preference, len(tokenizer))
    reason = "asked to train one"
    if preference == "auto":
        try:
            tokenizer = load_pretrained_tokenizer(DEFAULT_TOKENIZER)
            return tokenizer, TokenizerChoice(DEFAULT_TOKENIZER, len(tokenizer))
        except InputError as error:
            reason = f"GPT-2's tokenizer is unavailable: {error}"
    if corpus is None:
        raise ValueError(f"choose_tokenizer: no corpus to train a tokenizer on ({reason})")
    tokenizer = train_byte_level_bpe(corpus, vocab_size)
    return tokenizer, TokenizerChoice(TRAINED, len(tokenizer), reason)
