"""Choose the tokenizer for a run: GPT-2's when it can be loaded, else a GPT-2-style BPE trained here.

``train_byte_level_bpe`` trains a byte-level BPE with the ``tokenizers`` library that behaves like
GPT-2's: the same pre-tokenization (GPT-2's split regex, no prefix space), the same byte-level
decoder, ``<|endoftext|>`` as the last id and as bos/eos/unk token. It is saved as a
``GPT2Tokenizer`` folder, so ``AutoTokenizer.from_pretrained(folder)`` loads it like GPT-2's own.

``resolve_tokenizer`` implements the choice that the quickstart prints: a given folder or Hub id,
or GPT-2 from the Hub (cache first, then the Hub if it answers), or training on the corpus.

Command line (train on text / jsonl files and save)::

    python -m nanogpt2.data.train_tokenizer OUT_DIR FILE [FILE ...] [--vocab-size 8192]
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, GPT2Tokenizer, PreTrainedTokenizerBase

EOT = "<|endoftext|>"
GPT2_HUB_ID = "openai-community/gpt2"

TextsOrFiles = Iterable[str] | Iterable[os.PathLike[str]]


def _read_file(path: Path, text_column: str = "text") -> Iterator[str]:
    """Documents of a file: one per line of a .jsonl (its ``text_column``), the whole file otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"train_byte_level_bpe: {path} is not a file")
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)[text_column]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(
                        f"{path}:{line_no}: expected a JSON object with a {text_column!r} field"
                    ) from e
    else:
        yield path.read_text(encoding="utf-8", errors="replace")


def _iter_texts(texts_or_files: TextsOrFiles) -> Iterator[str]:
    # Path objects are files to read; plain strings are texts (a string is never guessed to be a path).
    for item in texts_or_files:
        if isinstance(item, os.PathLike):
            yield from _read_file(Path(item))
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(
                f"train_byte_level_bpe: expected str texts or Path files, got {type(item).__name__}"
            )


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

    ``texts_or_files``: strings are document texts; ``pathlib.Path`` items are files (``.jsonl``
    files are read through their ``text`` field, other files as one document each). The result
    is a transformers ``GPT2Tokenizer`` (tokenizers-backed), saved to ``out_dir`` when given. The
    vocabulary is smaller than ``vocab_size`` when the corpus has fewer distinct merges.
    """
    # 256 byte symbols + at least one merge + <|endoftext|>.
    if vocab_size < 258:
        raise ValueError(f"train_byte_level_bpe: vocab_size must be at least 258, got {vocab_size}")
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
    texts = _iter_texts(texts_or_files)
    tokenizer.train_from_iterator(texts, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    if EOT not in vocab:
        vocab[EOT] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    # Rebuilding from vocab + merges gives GPT-2's own tokenizer class and settings.
    result = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOT,
        bos_token=EOT,
        eos_token=EOT,
        add_prefix_space=False,
        model_max_length=model_max_length,
    )
    if out_dir is not None:
        result.save_pretrained(str(out_dir))
    return result


def hub_reachable(timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether the Hub answers quickly; avoids transformers' long retry loop when it does not."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}:
        return False, "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout_s)
    except Exception as e:  # DNS failure, refused, timeout, HTTP error
        if isinstance(e, urllib.error.HTTPError):
            return True, ""  # it answered
        return False, f"{endpoint} is not reachable ({type(e).__name__}: {e})"
    return True, ""


def load_pretrained_tokenizer(source: str = GPT2_HUB_ID) -> PreTrainedTokenizerBase:
    """A saved tokenizer from a local folder or a Hub id (local cache first; the Hub only if it answers).

    Raises ``OSError`` naming the reason when it cannot be loaded.
    """
    if Path(source).expanduser().is_dir():
        return AutoTokenizer.from_pretrained(str(Path(source).expanduser()))
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):  # not cached (or not a valid repo id): try the Hub below
        pass
    reachable, why = hub_reachable()
    if not reachable:
        raise OSError(f"tokenizer {source!r} is not in the local cache and the Hub cannot be used: {why}")
    return AutoTokenizer.from_pretrained(source)


def resolve_tokenizer(
    preference: str | None,
    *,
    corpus: TextsOrFiles | None = None,
    vocab_size: int = 8192,
    out_dir: str | os.PathLike[str] | None = None,
) -> tuple[PreTrainedTokenizerBase, str]:
    """Pick the run's tokenizer and say which one it is.

    ``preference``:
      * ``None`` / ``"auto"``: GPT-2 (``openai-community/gpt2``) when it can be loaded, otherwise a
        byte-level BPE of ``vocab_size`` trained on ``corpus`` (saved to ``out_dir``);
      * ``"train"``: always train on ``corpus``;
      * a folder or Hub id: exactly that tokenizer (an error if it cannot be loaded).

    Returns ``(tokenizer, description)``; the description names the source and the vocabulary size.
    """
    if preference not in (None, "auto", "train"):
        try:
            tokenizer = load_pretrained_tokenizer(preference)
        except (OSError, ValueError) as e:  # ValueError: not a valid Hub repository id
            raise OSError(f"cannot load the tokenizer {preference!r}: {e}") from e
        return tokenizer, f"{preference} ({len(tokenizer):,} tokens)"
    reason = "asked to train one"
    if preference != "train":
        try:
            tokenizer = load_pretrained_tokenizer(GPT2_HUB_ID)
            return tokenizer, f"GPT-2's tokenizer from {GPT2_HUB_ID} ({len(tokenizer):,} tokens)"
        except OSError as e:
            reason = f"GPT-2's tokenizer is unavailable: {e}"
    if corpus is None:
        raise ValueError(f"resolve_tokenizer: no corpus to train a tokenizer on ({reason})")
    tokenizer = train_byte_level_bpe(corpus, vocab_size, out_dir)
    where = f", saved to {out_dir}" if out_dir is not None else ""
    return tokenizer, (
        f"a byte-level BPE with GPT-2's pre-tokenization trained on the corpus "
        f"({len(tokenizer):,} tokens{where}), because {reason}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a GPT-2-style byte-level BPE tokenizer.")
    parser.add_argument("out_dir", help="folder to save the tokenizer into")
    parser.add_argument("files", nargs="+", type=Path, help="text or .jsonl (field 'text') files")
    parser.add_argument("--vocab-size", type=int, default=8192, help="ids including <|endoftext|>")
    args = parser.parse_args(argv)
    tokenizer = train_byte_level_bpe(args.files, args.vocab_size, args.out_dir, show_progress=True)
    print(f"saved a {len(tokenizer):,}-token tokenizer to {args.out_dir}")


if __name__ == "__main__":
    main()
