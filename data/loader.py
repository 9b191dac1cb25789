"""``TokenLoader``: (x, y) batches from prepared, memory-mapped token shards.

Layout of an epoch (the same on every rank, so ranks never need to talk):

* The split's documents form one token stream of ``N`` tokens (each document starts with EOT).
  It is cut into ``N_blocks = (N - 1) // T`` blocks of ``T`` tokens; block ``b`` gives the inputs
  ``stream[b*T : b*T+T]`` and targets ``stream[b*T+1 : b*T+T+1]`` (one row of a batch).
* Blocks are visited in order, or, with ``shuffle=True``, in a pseudo-random order drawn from
  ``(seed, epoch)``. The order is a keyed Feistel permutation evaluated per index, so it costs no
  memory and jumping to any position is O(1).
* Conversation data (an ``assistant_masks`` column, 1 where the loss applies) streams the same way;
  a target whose own mask is 0 becomes ``IGNORE_INDEX`` (-100, ignored by the model's loss), so the
  loss falls only on the assistant's tokens. ``x`` is unchanged, and data without masks is read as before.
* A global step takes the next ``B * world_size`` blocks of that order; rank ``r`` gets the
  ``B`` blocks ``r*B ... r*B+B-1`` of them. Every block of an epoch is used exactly once across
  ranks, except the last ``N_blocks % (B * world_size)`` blocks (less than one global batch).
  Unshuffled, a rank's rows are contiguous in the stream: a single ``B*T+1`` token read.

The position ``(epoch, global token offset in the epoch)`` is the whole state: ``state_dict()`` is a
few ints, ``load_state_dict()`` is O(1) and may change ``batch_size``/``world_size`` (the stream
continues at the same global token offset; only ``seq_len``, seed, shuffle and data must match).
Tokens are read zero-copy from the memory-mapped Arrow shards: resident memory does not grow with
the size of the data, only the OS page cache does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import load_from_disk
from transformers import PreTrainedTokenizerBase

from ..utils import InputError
from .meta import load_meta
from .tokenization import load_tokenizer, tokenizer_fingerprint

logger = logging.getLogger(__name__)

STATE_VERSION = 1
IGNORE_INDEX = -100  # the target id the model's cross-entropy skips
MASK_COLUMN = "assistant_masks"
_PERMUTATION_WINDOW = 1024  # shuffled positions evaluated at once (see _shuffled_blocks)


class BlockPermutation:
    """A pseudo-random permutation of ``range(size)`` keyed by ``(seed, epoch)``; O(1) memory.

    A balanced Feistel network permutes ``[0, 4**half_bits)`` (the smallest such domain >= size);
    cycle-walking (re-applying it until the value falls below ``size``) restricts it to
    ``range(size)`` and keeps it a bijection. The domain is < 4 * size, so few walks are needed.
    """

    ROUNDS = 4

    def __init__(self, size: int, seed: int, epoch: int) -> None:
        self.size = size
        bits = max(2, int(size - 1).bit_length())
        self.half_bits = (bits + 1) // 2
        self.half_mask = np.uint64((1 << self.half_bits) - 1)
        rng = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, epoch])
        self.keys = rng.integers(0, 2**63, size=self.ROUNDS, dtype=np.uint64)

    def _round(self, right: np.ndarray, key: np.uint64) -> np.ndarray:
        # splitmix64 finaliser of (right ^ key), uint64 arithmetic wraps modulo 2**64.
        x = right ^ key
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (x ^ (x >> np.uint64(31))) & self.half_mask

    def _feistel(self, values: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half_bits)
        left, right = values >> shift, values & self.half_mask
        for key in self.keys:
            left, right = right, left ^ self._round(right, key)
        return (left << shift) | right

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        """(n,) int64 positions in the epoch -> (n,) int64 block ids, all distinct."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.size):
            raise IndexError(f"positions must lie in [0, {self.size})")  # cycle-walking needs them inside
        with np.errstate(over="ignore"):
            values = self._feistel(indices.astype(np.uint64))
            outside = values >= np.uint64(self.size)
            while outside.any():
                values[outside] = self._feistel(values[outside])
                outside = values >= np.uint64(self.size)
        return values.astype(np.int64)


class TokenLoader:
    """Infinite iterator of ``(x, y)`` int64 CPU tensors of shape ``(batch_size, seq_len)``.

    ``y[i, t] == x[i, t+1]`` within a row's window of the token stream (next-token targets), or
    ``IGNORE_INDEX`` where the data has ``assistant_masks`` and the target's mask is 0.
    ``tokenizer`` (object, name or path) makes the loader refuse data prepared with another tokenizer.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: str,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = False,
        tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase | None = None,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("world_size", world_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.data_dir = Path(data_dir)
        self._meta = load_meta(self.data_dir)
        if split not in self._meta["splits"]:
            raise InputError(f"{self.data_dir} has no split {split!r} (splits: {', '.join(self._meta['splits'])})")
        if tokenizer is not None:
            expected = tokenizer_fingerprint(load_tokenizer(tokenizer))
            if expected != self._meta["tokenizer_hash"]:
                raise InputError(
                    f"{self.data_dir} was tokenized with another tokenizer ({self._meta.get('tokenizer_name')!r}, "
                    f"hash {self._meta['tokenizer_hash'][:12]}) than this run's "
                    f"({getattr(tokenizer, 'name_or_path', tokenizer)!r}, hash {expected[:12]}); "
                    f"prepare the data with the run's tokenizer"
                )
        self.split, self.batch_size, self.seq_len = split, batch_size, seq_len
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, bool(shuffle)

        # Zero-copy (n_tokens_in_chunk,) uint16/uint32 views of the memory-mapped Arrow record batches.
        table = load_from_disk(str(self.data_dir / split)).data
        self._chunks = _flat_views(table.column("input_ids"))
        # (n_tokens_in_chunk,) uint8 views aligned with the token views (same rows, same list lengths), or None.
        self._mask_chunks = _flat_views(table.column(MASK_COLUMN)) if MASK_COLUMN in table.column_names else None
        if self._mask_chunks is not None and [len(m) for m in self._mask_chunks] != [len(c) for c in self._chunks]:
            raise InputError(f"{self.data_dir / split}: {MASK_COLUMN} and input_ids differ in length; prepare it again")
        self._chunk_starts = np.cumsum([0] + [len(view) for view in self._chunks], dtype=np.int64)
        self.num_tokens = int(self._chunk_starts[-1])
        if self.num_tokens != self._meta["splits"][split]["tokens"]:
            raise InputError(
                f"{self.data_dir / split} holds {self.num_tokens} tokens but meta.json says "
                f"{self._meta['splits'][split]['tokens']}; the folder is damaged, prepare it again"
            )
        self._num_blocks = max(self.num_tokens - 1, 0) // seq_len
        self._rows_per_step = batch_size * world_size
        self.steps_per_epoch = self._num_blocks // self._rows_per_step
        if self.steps_per_epoch == 0:
            raise InputError(
                f"split {split!r} of {self.data_dir} has {self.num_tokens:,} tokens, fewer than one global batch "
                f"(batch_size {batch_size} x seq_len {seq_len} x world_size {world_size} + 1)"
            )
        self._epoch = 0
        self._block = 0  # next block position in this epoch's order, counted over all ranks
        self._permutation: BlockPermutation | None = None
        self._window_start, self._window = 0, np.empty(0, dtype=np.int64)

    # ----------------------------------------------------------------- properties
    @property
    def meta(self) -> dict[str, Any]:
        """The data folder's meta.json (a copy)."""
        return dict(self._meta)

    @property
    def epoch(self) -> int:
        """Epoch of the next batch (0-based)."""
        return self._epoch

    @property
    def tokens_per_epoch(self) -> int:
        """Input tokens yielded per epoch over all ranks (``steps_per_epoch * B * T * world_size``)."""
        return self.steps_per_epoch * self._rows_per_step * self.seq_len

    @property
    def tokens_per_step(self) -> int:
        """Input tokens of one global step (all ranks)."""
        return self._rows_per_step * self.seq_len

    @property
    def position(self) -> int:
        """Global token offset of the next batch within the current epoch."""
        return self._block * self.seq_len

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Exact position plus what identifies the stream; plain ints/strings (picklable, O(1))."""
        return {
            "version": STATE_VERSION,
            "epoch": self._epoch,
            "position": self.position,
            "split": self.split,
            "num_tokens": self.num_tokens,
            "tokenizer_hash": self._meta["tokenizer_hash"],
            "seq_len": self.seq_len,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; refuses a state of another stream (data, seq_len, seed, shuffle)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported TokenLoader state version {state.get('version')!r}")
        mine = self.state_dict()
        differs = [key for key in ("split", "num_tokens", "tokenizer_hash", "seq_len", "seed", "shuffle")
                   if state.get(key) != mine[key]]
        if differs:
            details = ", ".join(f"{key}: saved {state.get(key)!r}, now {mine[key]!r}" for key in differs)
            raise InputError(f"cannot resume: the saved loader state is for a different token stream ({details})")
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or position < 0 or position % self.seq_len:
            raise ValueError(f"invalid loader position: epoch {epoch}, token offset {position}")
        if (state["batch_size"], state["world_size"]) != (self.batch_size, self.world_size):
            logger.info(
                "resuming with batch_size %d x world_size %d (saved %d x %d): continuing at global token offset %d",
                self.batch_size, self.world_size, state["batch_size"], state["world_size"], position,
            )
        self._epoch, self._block = epoch, position // self.seq_len
        self._permutation = None
        self._wrap_epoch()

    # ----------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        first = self._block + self.rank * self.batch_size
        if self.shuffle:
            batch = self._read_rows(self._shuffled_blocks(first, self.batch_size))
        else:
            batch = self._read_contiguous(first)
        self._block += self._rows_per_step
        self._wrap_epoch()
        return batch

    def _wrap_epoch(self) -> None:
        # Past the last full global step (or a position saved with a larger global batch): next epoch.
        if self._block + self._rows_per_step > self.steps_per_epoch * self._rows_per_step:
            self._epoch += 1
            self._block = 0
            self._permutation = None

    def _shuffled_blocks(self, first: int, count: int) -> np.ndarray:
        """Block ids at positions ``first ... first+count-1`` of this epoch's shuffled order.

        The permutation is evaluated for a window of positions at a time (vectorised numpy work
        amortised over many batches); the window is dropped on a new epoch or a state load.
        """
        if self._permutation is None:
            self._permutation = BlockPermutation(self._num_blocks, self.seed, self._epoch)
            self._window_start, self._window = 0, np.empty(0, dtype=np.int64)
        offset = first - self._window_start
        if offset < 0 or offset + count > len(self._window):
            size = min(max(_PERMUTATION_WINDOW, 4 * self._rows_per_step), self._num_blocks - first)
            self._window_start = first
            self._window = self._permutation(np.arange(first, first + size, dtype=np.int64))
            offset = 0
        return self._window[offset : offset + count]

    @property
    def masked(self) -> bool:
        """True for conversation data: targets outside the assistant's tokens are ``IGNORE_INDEX``."""
        return self._mask_chunks is not None

    def _copy_tokens(self, start: int, out: np.ndarray, chunks: list[np.ndarray] | None = None) -> None:
        """Copy ``stream[start : start + len(out)]`` of ``chunks`` (default: the tokens) into ``out`` (converting
        dtype), across chunks."""
        chunks = self._chunks if chunks is None else chunks
        chunk = int(np.searchsorted(self._chunk_starts, start, side="right")) - 1
        written = 0
        while written < len(out):
            local = start + written - int(self._chunk_starts[chunk])
            piece = chunks[chunk][local : local + len(out) - written]
            out[written : written + len(piece)] = piece
            written += len(piece)
            chunk += 1

    def _read_contiguous(self, first_block: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows, length = self.batch_size, self.seq_len
        window = np.empty(rows * length + 1, dtype=np.int64)  # (B*T + 1,)
        self._copy_tokens(first_block * length, window)
        flat = torch.from_numpy(window)
        x, y = flat[:-1].view(rows, length), flat[1:].view(rows, length)
        if self._mask_chunks is not None:
            mask = np.empty(rows * length, dtype=np.uint8)  # (B*T,) masks of the targets
            self._copy_tokens(first_block * length + 1, mask, self._mask_chunks)
            y = y.masked_fill(torch.from_numpy(mask).view(rows, length) == 0, IGNORE_INDEX)
        return x, y

    def _read_rows(self, blocks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        length = self.seq_len
        x = np.empty((len(blocks), length), dtype=np.int64)  # (B, T)
        y = np.empty((len(blocks), length), dtype=np.int64)  # (B, T)
        starts = blocks * length
        chunks = np.searchsorted(self._chunk_starts, starts, side="right") - 1
        ends_in_chunk = starts + length + 1 <= self._chunk_starts[chunks + 1]
        window = np.empty(length + 1, dtype=np.int64)
        mask_window = np.empty(length, dtype=np.uint8)  # (T,) masks of one row's targets
        for row, (start, chunk, inside) in enumerate(zip(starts.tolist(), chunks.tolist(), ends_in_chunk.tolist(),
                                                         strict=True)):
            if inside:  # the common case: the row's T+1 tokens lie in one record batch
                local = start - int(self._chunk_starts[chunk])
                piece = self._chunks[chunk][local : local + length + 1]
                if self._mask_chunks is not None:
                    mask = self._mask_chunks[chunk][local + 1 : local + length + 1]
            else:
                self._copy_tokens(start, window)
                piece = window
                if self._mask_chunks is not None:
                    self._copy_tokens(start + 1, mask_window, self._mask_chunks)
                    mask = mask_window
            x[row] = piece[:-1]
            y[row] = piece[1:]
            if self._mask_chunks is not None:
                y[row][mask == 0] = IGNORE_INDEX
        return torch.from_numpy(x), torch.from_numpy(y)


def _flat_views(column: Any) -> list[np.ndarray]:
    """Zero-copy (n_values_in_chunk,) views of a list column's memory-mapped record batches (empty ones left out)."""
    return [view for view in (chunk.flatten().to_numpy(zero_copy_only=True) for chunk in column.chunks) if len(view)]
