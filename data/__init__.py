"""Data for nanogpt2: tokenize corpora into memory-mapped Arrow shards and stream (x, y) batches.

``prepare_data`` writes ``OUT/{train,val,tokenizer}`` and ``OUT/meta.json``; ``TokenLoader`` reads
them back as ``(B, T)`` int64 batches, partitioned across ranks, resumable from ``state_dict()``.
``train_byte_level_bpe`` trains a GPT-2-style tokenizer when GPT-2's does not fit the corpus.
"""

from .loader import TokenLoader
from .meta import load_data_tokenizer, load_meta
from .prepare import DEFAULT_TOKENS_PER_SHARD, DEFAULT_VAL_TOKENS, OutputExistsError, prepare_data
from .sources import TXT_SPLITS, SourceError
from .tokenization import DEFAULT_TOKENIZER, END_OF_TEXT, load_tokenizer, tokenizer_fingerprint
from .train_tokenizer import train_byte_level_bpe

__all__ = [
    "DEFAULT_TOKENIZER",
    "DEFAULT_TOKENS_PER_SHARD",
    "DEFAULT_VAL_TOKENS",
    "END_OF_TEXT",
    "OutputExistsError",
    "SourceError",
    "TXT_SPLITS",
    "TokenLoader",
    "load_data_tokenizer",
    "load_meta",
    "load_tokenizer",
    "prepare_data",
    "tokenizer_fingerprint",
    "train_byte_level_bpe",
]
