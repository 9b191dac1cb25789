"""Data for nanogpt2: tokenize corpora into memory-mapped Arrow shards and stream (x, y) batches.

``prepare_data`` writes ``OUT/{train,val,tokenizer}`` and ``OUT/meta.json``; ``TokenLoader`` reads
them back as ``(B, T)`` int64 batches, partitioned across ranks, resumable from ``state_dict()``.
"""

from .loader import TokenLoader
from .meta import load_data_tokenizer, load_meta
from .prepare import DEFAULT_VAL_TOKENS, prepare_data
from .sources import SourceError
from .tokenization import DEFAULT_TOKENIZER, load_tokenizer, tokenizer_fingerprint

__all__ = [
    "DEFAULT_TOKENIZER",
    "DEFAULT_VAL_TOKENS",
    "SourceError",
    "TokenLoader",
    "load_data_tokenizer",
    "load_meta",
    "load_tokenizer",
    "prepare_data",
    "tokenizer_fingerprint",
]
