"""nanogpt2.utils: what the other folders share: atomic file writes, JSON lines, the user-error type and
loading a saved model for inference."""

from .errors import InputError
from .files import atomic_write, iter_jsonl, read_jsonl, sha256_file, write_json, write_text
from .models import context_length, load_model_and_tokenizer

__all__ = [
    "InputError",
    "atomic_write",
    "context_length",
    "iter_jsonl",
    "load_model_and_tokenizer",
    "read_jsonl",
    "sha256_file",
    "write_json",
    "write_text",
]
