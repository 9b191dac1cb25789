"""nanogpt2.utils: what the other folders share: atomic file writes, JSON lines and the user-error type.

Loading a saved model for inference (`utils.models`) and a chat session (`utils.chat`) import
transformers: they are imported from their modules, so that the light helpers (and `nanogpt2 --help`)
do not pay for it."""

from .errors import InputError
from .files import atomic_write, iter_jsonl, read_jsonl, sha256_file, write_json, write_text

__all__ = [
    "InputError",
    "atomic_write",
    "iter_jsonl",
    "read_jsonl",
    "sha256_file",
    "write_json",
    "write_text",
]
