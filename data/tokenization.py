"""Tokenizers for data preparation: loading, fingerprinting and document encoders.

Every document becomes ``[EOT] + encode_ordinary(text)``, as in GPT-2 pretraining: text that
happens to spell a special token (a literal ``<|endoftext|>``) is encoded as ordinary text.

Two encoders produce those ids:

* ``tiktoken`` (fast path): a tiktoken ``Encoding`` built from the Hugging Face tokenizer's own
  vocabulary and merges. Used only for byte-level BPE tokenizers with GPT-2's pre-tokenizer whose
  structure maps one-to-one onto tiktoken's algorithm AND whose ids agree with the Hugging Face
  tokenizer on a probe set (built-in edge cases plus a sample of the data being prepared).
  For GPT-2 this is the same encoding as tiktoken's ``gpt2`` (same ranks, same split pattern).
* ``huggingface`` (general path): the tokenizer's Rust backend with special-token matching
  switched off (the equivalent of ``split_special_tokens=True``) and no added BOS/EOS.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import tiktoken
from tiktoken_ext.openai_public import r50k_pat_str
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.convert_slow_tokenizer import bytes_to_unicode  # GPT-2's byte -> printable character table

from ..utils import InputError

DEFAULT_TOKENIZER = "openai-community/gpt2"  # GPT-2's own tokenizer on the Hugging Face Hub
END_OF_TEXT = "<|endoftext|>"  # GPT-2's document separator; a trained tokenizer's last id

# Edge cases for the encoder equivalence check: contractions, whitespace runs, digits, unicode
# letters and marks, emoji (multi-byte BPE pieces), special-token look-alikes, control chars.
PROBE_TEXTS: tuple[str, ...] = (
    "Hello world",
    "I'm, you're, they'll, we've, she'd, it's DON'T 'quoted' ''",
    "  leading spaces\n\n\ttabs\t\tand   runs of    spaces   \n  \n",
    "numbers 1234567890 3.14159 -42 1,000,000 2026-11-25 0x1F",
    "Ünïcödé façade naïve – “quotes” — ellipsis… café Ελληνικά русский 中文字符 日本語のテキスト 한국어",
    "emoji 😀👍🏽 🇫🇷 family 👨‍👩‍👧 and combining e\u0301 a\u030a",
    "special <|endoftext|> inside <|endoftext|><|endoftext|> text and <|im_start|> <s></s> [CLS]",
    "code: def f(x):\n    return x**2  # comment\r\n\tif a != b: pass\n",
    "\x00\x01\x7f control \u200b zero-width \ufeff bom \u00a0 nbsp",
    "",
    " ",
    "\n",
)


def load_tokenizer(tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A tokenizer object from a Hub id, a local folder, or an already-loaded tokenizer."""
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    if not isinstance(tokenizer, str | os.PathLike):
        raise TypeError(f"tokenizer must be a name, a path or a PreTrainedTokenizerBase, got {type(tokenizer)}")
    try:
        return AutoTokenizer.from_pretrained(os.fspath(tokenizer))
    except (OSError, ValueError) as error:
        raise InputError(
            f"cannot load the tokenizer {os.fspath(tokenizer)!r} (a Hugging Face Hub id or a local tokenizer "
            f"folder is expected; offline, give a local folder): {str(error).splitlines()[0]}"
        ) from None


def tokenizer_name(tokenizer: PreTrainedTokenizerBase) -> str:
    """The name or path the tokenizer was loaded from ('' when built in memory)."""
    return str(getattr(tokenizer, "name_or_path", "") or "")


_PARSED_BACKEND: list[Any] = []  # [tokenizer.json text, its parsed dict] of the last tokenizer seen
# Encode functions built in this process, by (path, fingerprint). Built once in the parent while
# checking the encoder, they are inherited by forked Dataset.map workers instead of rebuilt there.
_ENCODE_FUNCTIONS: dict[tuple[str, str], Callable[[list[str]], list[Any]]] = {}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: creating 100k+ small containers (GPT-2's merges, the
    ranks) otherwise triggers repeated full collections. Nothing made here has cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _backend_json(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any] | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    text = backend.to_str()
    if _PARSED_BACKEND and _PARSED_BACKEND[0] == text:  # fingerprint and ranks parse the same JSON
        return _PARSED_BACKEND[1]
    with _gc_paused():
        parsed = json.loads(text)
    _PARSED_BACKEND[:] = [text, parsed]
    return parsed


def _merge_pairs(merges: Sequence[Any]) -> Iterator[tuple[str, str]]:
    """(left, right) of each merge; tokenizer.json stores "a b" strings (older files) or [a, b] pairs.

    A generator on purpose: materialising 50k small containers next to the parsed JSON triggers
    repeated full garbage-collection passes."""
    for merge in merges:
        if isinstance(merge, str):
            left, _, right = merge.partition(" ")
            yield left, right
        else:
            yield merge[0], merge[1]


def tokenizer_fingerprint(tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase) -> str:
    """SHA-256 of the vocabulary, merges and added/special tokens: what decides the token ids.

    Stable across ``save_pretrained``/``from_pretrained`` of the same tokenizer; any change to the
    vocabulary, the merges or the special tokens gives a different value.
    """
    tokenizer = load_tokenizer(tokenizer)
    backend = _backend_json(tokenizer)
    if backend is not None:
        model = backend["model"]
        vocab = model.get("vocab")
        # Unigram vocabularies are [token, score] lists in id order; BPE/WordPiece/WordLevel are dicts.
        entries = sorted(vocab.items(), key=lambda item: item[1]) if isinstance(vocab, dict) else vocab or []
        added = sorted((t["id"], t["content"], bool(t.get("special"))) for t in backend["added_tokens"])
        parts = [
            f"model {model.get('type')}",
            *(f"vocab {entry[1]!r} {entry[0]!r}" for entry in entries),
            *(f"merge {left!r} {right!r}" for left, right in _merge_pairs(model.get("merges") or [])),
            *(f"added {token_id} {content!r} {special}" for token_id, content, special in added),
        ]
    else:
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
        parts = [*(f"vocab {token_id} {token!r}" for token, token_id in vocab),
                 *(f"special {token!r}" for token in sorted(tokenizer.all_special_tokens))]
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def end_of_text_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id placed before each document: the EOS token, or ``<|endoftext|>`` when there is none."""
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    if END_OF_TEXT in vocab:
        return int(vocab[END_OF_TEXT])
    raise InputError(
        f"tokenizer {tokenizer_name(tokenizer)!r} has no end-of-text token (neither an eos_token nor "
        f"{END_OF_TEXT!r}); documents could not be separated"
    )


def token_dtype(tokenizer: PreTrainedTokenizerBase) -> str:
    """'uint16' when every id fits (GPT-2's 50,257), else 'uint32'."""
    return "uint16" if len(tokenizer) <= 2**16 else "uint32"


@lru_cache(maxsize=1)
def _gpt2_unicode_translation() -> dict[int, str]:
    """``str.translate`` table: byte-level vocabulary chars -> latin-1 chars of their bytes, any other
    char below 256 -> U+FFFF (which then fails latin-1 encoding, flagging a non-byte-level token)."""
    table = {code: "\uffff" for code in range(256)}
    table.update({ord(char): chr(byte) for byte, char in bytes_to_unicode().items()})
    return table


def gpt2_style_bpe_ranks(tokenizer: PreTrainedTokenizerBase) -> tuple[dict[bytes, int] | None, str]:
    """tiktoken ``mergeable_ranks`` equivalent to the tokenizer, or ``(None, reason)`` when not provable.

    Requirements (each makes tiktoken's "merge the adjacent pair whose result has the lowest rank"
    identical to Hugging Face's "apply the highest-priority merge"): byte-level BPE with GPT-2's
    regex and no prefix space, no normalizer, all 256 bytes in the vocabulary, every multi-byte
    token produced by exactly one merge, and token ids increasing in merge order (id == rank).
    """
    backend = _backend_json(tokenizer)
    if backend is None:
        return None, "tokenizer has no Rust backend"
    model = backend["model"]
    if model.get("type") != "BPE":
        return None, f"model type is {model.get('type')}, not BPE"
    if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return None, "BPE uses dropout or subword prefixes/suffixes"
    if model.get("byte_fallback") or model.get("ignore_merges"):
        return None, "BPE uses byte_fallback or ignore_merges"
    if backend.get("normalizer") is not None:
        return None, "tokenizer has a normalizer"
    pre = backend.get("pre_tokenizer") or {}
    if not (pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space")):
        return None, f"pre-tokenizer is not GPT-2's ByteLevel regex split: {pre}"
    if any(not token.get("special") for token in backend["added_tokens"]):
        return None, "tokenizer has non-special added tokens"

    with _gc_paused():
        return _byte_level_ranks(model, {token["id"] for token in backend["added_tokens"]})


def _byte_level_ranks(model: dict[str, Any], added_ids: set[int]) -> tuple[dict[bytes, int] | None, str]:
    translation = _gpt2_unicode_translation()
    ranks: dict[bytes, int] = {}
    for token, token_id in model["vocab"].items():
        if token_id in added_ids:
            continue
        try:
            ranks[token.translate(translation).encode("latin-1")] = token_id
        except UnicodeEncodeError:
            return None, f"vocabulary entry {token!r} is not byte-level"
    if sum(len(piece) == 1 for piece in ranks) != 256:
        return None, "vocabulary does not contain all 256 single bytes"
    merges = model.get("merges") or []
    previous_id = max(ranks[piece] for piece in ranks if len(piece) == 1)
    for left, right in _merge_pairs(merges):
        merged_id = model["vocab"].get(left + right)
        if merged_id is None or merged_id <= previous_id:
            return None, f"merge {left!r} {right!r} does not produce tokens in increasing id order"
        previous_id = merged_id
    if len(merges) != sum(len(piece) > 1 for piece in ranks):
        return None, "some multi-byte tokens are not produced by a merge"
    return ranks, "byte-level BPE with GPT-2's split pattern"


def _tiktoken_encoding(ranks: dict[bytes, int], fingerprint: str, eot_id: int) -> tiktoken.Encoding:
    # The EOT is registered as tiktoken's special token (as in its gpt2 encoding) but never allowed
    # while encoding: documents are encoded as ordinary text.
    return tiktoken.Encoding(
        name=f"bytelevel-bpe-{fingerprint[:16]}", pat_str=r50k_pat_str, mergeable_ranks=ranks,
        special_tokens={END_OF_TEXT: eot_id},
    )


def _pack_ranks(ranks: dict[bytes, int]) -> tuple[bytes, bytes, bytes]:
    """{token bytes: rank} -> (concatenated tokens, int64 lengths, int64 ranks) as byte strings."""
    lengths = np.fromiter(map(len, ranks), dtype=np.int64, count=len(ranks))
    values = np.fromiter(ranks.values(), dtype=np.int64, count=len(ranks))
    return b"".join(ranks), lengths.tobytes(), values.tobytes()


def _unpack_ranks(blob: bytes, lengths: bytes, values: bytes) -> dict[bytes, int]:
    ends = np.cumsum(np.frombuffer(lengths, dtype=np.int64)).tolist()
    starts = [0, *ends[:-1]]
    return {blob[a:b]: rank for a, b, rank in zip(starts, ends, np.frombuffer(values, np.int64).tolist(), strict=True)}


@dataclass
class DocumentEncoder:
    """Picklable ``Dataset.map`` function: a batch of texts (pyarrow) -> ``input_ids`` lists.

    Holds only plain data (ranks or the backend tokenizer's JSON); the tiktoken/tokenizers object
    is rebuilt lazily in each worker process, so pickling it to ``map(num_proc=N)`` stays cheap.
    """

    path: str  # "tiktoken", "huggingface" (Rust backend) or "transformers" (Python tokenizer)
    eot_id: int
    dtype: str
    text_column: str
    fingerprint: str
    ranks: dict[bytes, int] | tuple[bytes, bytes, bytes] | None = None  # dict, or packed while pickled
    backend_json: str | None = None
    python_tokenizer: PreTrainedTokenizerBase | None = None
    _encode_batch: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # Dataset.map pickles the function for every worker job with dill's pure-Python pickler, which
        # is slow on a 50k-entry dict: ship the ranks as three flat byte strings instead.
        state = self.__dict__.copy()
        state["_encode_batch"] = None
        if isinstance(self.ranks, dict):
            state["ranks"] = _pack_ranks(self.ranks)
        return state

    def _mergeable_ranks(self) -> dict[bytes, int]:
        if isinstance(self.ranks, tuple):
            self.ranks = _unpack_ranks(*self.ranks)
        return self.ranks or {}

    def encode_arrays(self, texts: list[str]) -> list[Any]:
        """Token ids of each text without the EOT (ordinary text only): numpy arrays or lists."""
        if self._encode_batch is None:
            key = (self.path, self.fingerprint)
            if key not in _ENCODE_FUNCTIONS:
                _ENCODE_FUNCTIONS[key] = self._build()
            self._encode_batch = _ENCODE_FUNCTIONS[key]
        return self._encode_batch(texts)

    def encode_texts(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text as lists, through the same code path as ``__call__``."""
        return [ids.tolist() if isinstance(ids, np.ndarray) else list(ids) for ids in self.encode_arrays(texts)]

    def _build(self) -> Callable[[list[str]], list[Any]]:
        if self.path == "tiktoken":
            encoding = _tiktoken_encoding(self._mergeable_ranks(), self.fingerprint, self.eot_id)
            # encode with no allowed and no disallowed special tokens == encode_ordinary (a special
            # token's text is encoded as ordinary text), returned as a uint32 array without
            # creating a Python int per token.
            return lambda texts: [
                encoding.encode_to_numpy(text, allowed_special=set(), disallowed_special=()) for text in texts
            ]
        if self.path == "transformers":
            tokenizer = self.python_tokenizer
            return lambda texts: _huggingface_encode(tokenizer, texts)
        backend = Tokenizer.from_str(self.backend_json or "")
        backend.no_truncation()
        backend.no_padding()
        backend.encode_special_tokens = True  # "<|endoftext|>" in text is ordinary text
        return lambda texts: [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]

    def __call__(self, batch: pa.Table) -> pa.Table:
        """(n_docs,) texts -> (n_docs,) lists ``[eot, *ids]`` as one flat array plus offsets."""
        encoded = self.encode_arrays(batch.column(self.text_column).to_pylist())
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(ids) + 1 for ids in encoded], out=offsets[1:])
        eot = np.array([self.eot_id], dtype=self.dtype)
        pieces = [piece for ids in encoded for piece in (eot, np.asarray(ids, dtype=self.dtype))]
        flat = np.concatenate(pieces) if pieces else np.empty(0, dtype=self.dtype)
        if offsets[-1] < 2**31:
            return pa.table({"input_ids": pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), flat)})
        return pa.table({"input_ids": pa.LargeListArray.from_arrays(pa.array(offsets), flat)})


def _huggingface_encode(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Reference ids through transformers: no BOS/EOS added, special tokens split as text."""
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"]


def build_document_encoder(
    tokenizer: PreTrainedTokenizerBase,
    text_column: str,
    sample_texts: Sequence[str] = (),
    fingerprint: str | None = None,
) -> tuple[DocumentEncoder, str]:
    """The fastest encoder whose ids provably equal the tokenizer's, and a sentence saying which.

    ``sample_texts`` (a sample of the data) join the built-in probe texts in the equality check.
    """
    fingerprint = fingerprint or tokenizer_fingerprint(tokenizer)
    common = {
        "eot_id": end_of_text_id(tokenizer),
        "dtype": token_dtype(tokenizer),
        "text_column": text_column,
        "fingerprint": fingerprint,
    }
    probe = [*PROBE_TEXTS, *sample_texts]
    reference = _huggingface_encode(tokenizer, probe)
    ranks, reason = gpt2_style_bpe_ranks(tokenizer)
    if ranks is not None:
        fast = DocumentEncoder(path="tiktoken", ranks=ranks, **common)
        mismatches = sum(ids != expected for ids, expected in zip(fast.encode_texts(probe), reference, strict=True))
        if mismatches == 0:
            return fast, f"tiktoken ({reason}; ids equal to the tokenizer's on {len(probe)} probe texts)"
        reason = f"tiktoken encoding differs from the tokenizer on {mismatches} of {len(probe)} probe texts"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        python_path = DocumentEncoder(path="transformers", python_tokenizer=tokenizer, **common)
        return python_path, f"transformers Python tokenizer (tiktoken not used: {reason})"
    general = DocumentEncoder(path="huggingface", backend_json=backend.to_str(), **common)
    mismatches = sum(ids != expected for ids, expected in zip(general.encode_texts(probe), reference, strict=True))
    if mismatches:
        raise RuntimeError(f"backend encoding differs from the tokenizer on {mismatches} probe texts")
    return general, f"huggingface tokenizers backend (tiktoken not used: {reason})"
