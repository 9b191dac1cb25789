"""Data for nanogpt2: tokenize corpora into memory-mapped Arrow shards and stream (x, y) batches.

``prepare_data`` (documents) and ``prepare_chat_data`` (conversations, with ``assistant_masks``) write
``OUT/{train,val,tokenizer}`` and ``OUT/meta.json``; ``TokenLoader`` reads them back as ``(B, T)`` int64
batches (targets outside the assistant's tokens = ``IGNORE_INDEX`` for conversations), partitioned across
ranks, resumable from ``state_dict()``.
``train_byte_level_bpe`` trains a GPT-2-style tokenizer when GPT-2's does not fit the corpus.
"""

from .chat import prepare_chat_data
from .chat_template import CHAT_TEMPLATE, CHAT_TOKENS, END_OF_TURN, add_chat_template
from .loader import IGNORE_INDEX, TokenLoader
from .meta import CHAT_CONTENT, TEXT_CONTENT, is_chat_data, load_data_tokenizer, load_meta
from .oasst import THREAD_MODES
from .prepare import DEFAULT_TOKENS_PER_SHARD, DEFAULT_VAL_TOKENS, OutputExistsError, prepare_data
from .sources import TXT_SPLITS, SourceError
from .tokenization import DEFAULT_TOKENIZER, END_OF_TEXT, load_tokenizer, tokenizer_fingerprint
from .train_tokenizer import train_byte_level_bpe

__all__ = [
    "CHAT_CONTENT",
    "CHAT_TEMPLATE",
    "CHAT_TOKENS",
    "DEFAULT_TOKENIZER",
    "DEFAULT_TOKENS_PER_SHARD",
    "DEFAULT_VAL_TOKENS",
    "END_OF_TEXT",
    "END_OF_TURN",
    "IGNORE_INDEX",
    "OutputExistsError",
    "SourceError",
    "TEXT_CONTENT",
    "THREAD_MODES",
    "TXT_SPLITS",
    "TokenLoader",
    "add_chat_template",
    "is_chat_data",
    "load_data_tokenizer",
    "load_meta",
    "load_tokenizer",
    "prepare_chat_data",
    "prepare_data",
    "tokenizer_fingerprint",
    "train_byte_level_bpe",
]
