"""Train a byte-level BPE that behaves like GPT-2's, for corpora or vocabulary sizes GPT-2's does not fit.

Same pre-tokenization as GPT-2 (its split regex, no prefix space), the same byte-level decoder, and
``<|endoftext|>`` as the last id and as bos/eos/unk token. Saved as a ``GPT2Tokenizer`` folder, so
``AutoTokenizer.from_pretrained(folder)`` loads it like GPT-2's own (`nanogpt2 train-tokenizer`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Tokenizer

from ..utils import InputError
from .sources import iter_texts
from .tokenization import END_OF_TEXT

TextsOrFiles = Iterable[str] | Iterable[os.PathLike[str]]


def _texts(texts_or_files: TextsOrFiles) -> Iterator[str]:
    # Path objects are files to read; plain strings are texts (a string is never guessed to be a path).
    for item in texts_or_files:
        if isinstance(item, os.PathLike):
            yield from iter_texts([os.fspath(item)])
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(f"train_byte_level_bpe: expected str texts or Path files, got {type(item).__name__}")


def train_byte_level_bpe(
    texts_or_files: TextsOrFiles,
    vocab_size: int,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    min_frequency: int = 2,
    model_max_length: int = 1024,
    show_progress: bool = False,
) -> GPT2Tokenizer:
    """Train a GPT-2-style byte-level BPE of ``vocab_size`` ids (``<|endoftext|>`` included).

    ``texts_or_files``: strings are document texts; ``pathlib.Path`` items are files, folders or globs
    read by the rules of ``prepare_data`` (``.jsonl`` through its ``text`` field, ``.parquet`` through its
    ``text`` column, ``.txt`` one document per file). The result is a transformers ``GPT2Tokenizer``
    (tokenizers-backed), saved to ``out_dir`` when given. The vocabulary is smaller than ``vocab_size``
    when the corpus has fewer distinct merges.
    """
    # 256 byte symbols + at least one merge + <|endoftext|>.
    if vocab_size < 258:
        raise InputError(f"vocab_size must be at least 258 (256 bytes, a merge, {END_OF_TEXT}), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    # GPT-2's pre-tokenization: its split regex on the raw text, then bytes mapped to printable chars.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # leave the last id for <|endoftext|>, where GPT-2 has it
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is encodable
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(_texts(texts_or_files), trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    vocab.setdefault(END_OF_TEXT, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    # Rebuilding from vocab + merges gives GPT-2's own tokenizer class and settings.
    result = GPT2Tokenizer(
        vocab=vocab, merges=merges, unk_token=END_OF_TEXT, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
        add_prefix_space=False, model_max_length=model_max_length,
    )
    if out_dir is not None:
        result.save_pretrained(str(out_dir))
    return result
