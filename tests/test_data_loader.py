"""TokenLoader: shapes and targets, rank partitions, shuffling, epochs, exact resume, tokenizer check.

Most tests use a synthetic split whose token at stream position ``i`` is ``i`` itself, so every
row tells where in the stream it was read from.
"""

from __future__ import annotations

import io
import pickle
import re
import time
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import generated_documents
from datasets import Dataset, Features, List, Value

from nanogpt2.data import TokenLoader, train_byte_level_bpe
from nanogpt2.data.loader import BlockPermutation
from nanogpt2.data.meta import FORMAT, FORMAT_VERSION
from nanogpt2.utils import InputError, write_json

STREAM_TOKENS = 20_011  # stream positions 0..20010 are the token ids (all < 2**16)


def position_masks(total: int) -> np.ndarray:
    """(total,) uint8 pseudo-random 0/1 ``assistant_masks`` of the positional stream."""
    return np.random.default_rng(1).integers(0, 2, size=total, dtype=np.uint8)


def write_position_split(data_dir: Path, total: int = STREAM_TOKENS, num_shards: int = 3, masks: bool = False) -> Path:
    """A prepared-data folder whose train/val token streams are 0, 1, 2, ... in documents of 1-97 tokens
    (with ``masks``: and an ``assistant_masks`` column, ``position_masks(total)`` cut the same way)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 98, size=total)
    bounds = np.minimum(np.concatenate([[0], np.cumsum(lengths)]), total)
    bounds = bounds[: np.searchsorted(bounds, total) + 1]
    docs = [list(range(int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    columns: dict[str, list] = {"input_ids": docs}
    features = Features({"input_ids": List(Value("uint16"))})
    if masks:
        stream_masks = position_masks(total)
        columns["assistant_masks"] = [stream_masks[doc[0] : doc[-1] + 1].tolist() for doc in docs]
        features["assistant_masks"] = List(Value("uint8"))
    splits = {}
    for split in ("train", "val"):
        Dataset.from_dict(columns, features=features).save_to_disk(str(data_dir / split), num_shards=num_shards)
        splits[split] = {"documents": len(docs), "tokens": total, "shards": []}
    write_json(data_dir / "meta.json", {
        "format": FORMAT, "format_version": FORMAT_VERSION, "complete": True, "tokenizer_hash": "synthetic",
        "tokenizer_name": "synthetic", "eot_id": 0, "dtype": "uint16", "splits": splits,
    })
    return data_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_position_split(tmp_path_factory.mktemp("positions"))


def row_starts(x: torch.Tensor) -> list[int]:
    return x[:, 0].tolist()


def check_rows(x: torch.Tensor, y: torch.Tensor) -> None:
    """Each row is a window of the positional stream: x = s[p : p+T], y = s[p+1 : p+T+1]."""
    T = x.shape[1]
    expected = x[:, :1] + torch.arange(T)
    assert torch.equal(x, expected) and torch.equal(y, expected + 1)


def test_batches_are_int64_windows_with_shifted_targets(data_dir):
    loader = TokenLoader(data_dir, "train", batch_size=4, seq_len=64)
    x, y = next(loader)
    assert x.shape == y.shape == (4, 64) and x.dtype == y.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous()
    check_rows(x, y)
    assert row_starts(x) == [0, 64, 128, 192]
    assert loader.tokens_per_step == 256
    assert loader.tokens_per_epoch == (STREAM_TOKENS - 1) // 64 // 4 * 256
    views = loader._chunks
    assert len(views) >= 3 and all(not view.flags.writeable for view in views)  # zero-copy, memory-mapped


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_read_disjoint_parts_covering_the_epoch(data_dir, world_size, shuffle):
    B, T = 5, 32
    loaders = [TokenLoader(data_dir, "train", B, T, rank=r, world_size=world_size, shuffle=shuffle, seed=3)
               for r in range(world_size)]
    steps = loaders[0].steps_per_epoch
    starts: list[int] = []
    for _ in range(steps):
        for loader in loaders:
            x, y = next(loader)
            check_rows(x, y)
            starts += row_starts(x)
    blocks = (STREAM_TOKENS - 1) // T
    assert len(starts) == len(set(starts)) == steps * B * world_size  # disjoint
    assert blocks - len(starts) < B * world_size  # only a remainder below one global batch is unused
    assert all(s % T == 0 and s + T + 1 <= STREAM_TOKENS for s in starts)
    if not shuffle:
        assert starts == list(range(0, len(starts) * T, T))  # the stream in order
    assert all(loader.epoch == 1 for loader in loaders)


def test_shuffle_depends_on_seed_and_epoch_and_epochs_continue(data_dir):
    def epoch_starts(loader: TokenLoader) -> list[int]:
        return [s for x, _ in islice(loader, loader.steps_per_epoch) for s in row_starts(x)]

    loader = TokenLoader(data_dir, "train", 8, 16, shuffle=True, seed=0)
    first, second = epoch_starts(loader), epoch_starts(loader)
    assert loader.epoch == 2
    assert first != second and len(set(first) | set(second)) > len(first)
    assert first == epoch_starts(TokenLoader(data_dir, "train", 8, 16, shuffle=True, seed=0))
    assert first != epoch_starts(TokenLoader(data_dir, "train", 8, 16, shuffle=True, seed=1))
    # No shard-periodic pattern: consecutive rows jump around the stream.
    assert np.mean(np.abs(np.diff(first))) > STREAM_TOKENS / 10
    plain = TokenLoader(data_dir, "train", 8, 16)
    assert epoch_starts(plain) == epoch_starts(plain)  # unshuffled epochs repeat the same order


def test_block_permutation_is_a_bijection():
    for size in (1, 2, 3, 1000, 4097):
        values = BlockPermutation(size, seed=7, epoch=2)(np.arange(size))
        assert sorted(values.tolist()) == list(range(size))
    with pytest.raises(IndexError):
        BlockPermutation(10, 0, 0)(np.array([10]))


@pytest.mark.parametrize("shuffle", [False, True])
def test_resume_mid_epoch_yields_the_same_batches(data_dir, shuffle):
    reference = TokenLoader(data_dir, "train", 6, 32, rank=1, world_size=2, shuffle=shuffle, seed=5)
    steps = reference.steps_per_epoch
    expected = [next(reference) for _ in range(steps + 7)]  # crosses into the second epoch

    interrupted = TokenLoader(data_dir, "train", 6, 32, rank=1, world_size=2, shuffle=shuffle, seed=5)
    for _ in range(steps - 3):
        next(interrupted)
    buffer = io.BytesIO()
    torch.save(interrupted.state_dict(), buffer)  # as accelerate's save_state stores it
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert pickle.loads(pickle.dumps(state)) == state
    assert all(isinstance(v, int | str | bool) for v in state.values())

    resumed = TokenLoader(data_dir, "train", 6, 32, rank=1, world_size=2, shuffle=shuffle, seed=5)
    resumed.load_state_dict(state)
    assert resumed.epoch == 0 and resumed.position == (steps - 3) * 6 * 2 * 32
    for (x, y), (ex, ey) in zip(islice(resumed, 10), expected[steps - 3 :], strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey)


@pytest.mark.parametrize("shuffle", [False, True])
def test_resume_with_other_world_or_batch_size_continues_the_global_stream(data_dir, shuffle):
    T = 16
    single = TokenLoader(data_dir, "train", 8, T, shuffle=shuffle, seed=2)
    uninterrupted = [s for x, _ in islice(single, 20) for s in row_starts(x)]

    first = TokenLoader(data_dir, "train", 8, T, shuffle=shuffle, seed=2)
    consumed = [s for x, _ in islice(first, 10) for s in row_starts(x)]
    state = first.state_dict()
    # Two ranks of 4 rows: the same global batches, split between the ranks.
    ranks = [TokenLoader(data_dir, "train", 4, T, rank=r, world_size=2, shuffle=shuffle, seed=2) for r in (0, 1)]
    for loader in ranks:
        loader.load_state_dict(state)
    continued = []
    for _ in range(10):
        for loader in ranks:
            continued += row_starts(next(loader)[0])
    assert consumed + continued == uninterrupted
    # One rank of 3 rows: continues at the same global token offset, no replay, no gap.
    three = TokenLoader(data_dir, "train", 3, T, shuffle=shuffle, seed=2)
    three.load_state_dict(state)
    assert [s for x, _ in islice(three, 2) for s in row_starts(x)] == uninterrupted[80:86]


def test_resume_refuses_a_different_stream(data_dir, tmp_path):
    state = TokenLoader(data_dir, "train", 4, 32, seed=1).state_dict()
    for kwargs, field in (({"seq_len": 16}, "seq_len"), ({"seed": 2}, "seed"), ({"shuffle": True}, "shuffle")):
        loader = TokenLoader(data_dir, "train", 4, **({"seq_len": 32, "seed": 1} | kwargs))
        with pytest.raises(ValueError, match=f"different token stream.*{field}"):
            loader.load_state_dict(state)
    other = write_position_split(tmp_path / "other", total=STREAM_TOKENS - 100)
    with pytest.raises(ValueError, match="num_tokens"):
        TokenLoader(other, "train", 4, 32, seed=1).load_state_dict(state)


def test_load_state_dict_is_constant_time(tmp_path):
    big = write_position_split(tmp_path / "big", total=60_000, num_shards=4)
    loader = TokenLoader(big, "train", 2, 4, shuffle=True)  # ~15,000 blocks
    state = loader.state_dict() | {"position": (loader.steps_per_epoch - 1) * 8, "epoch": 1_000_000}
    start = time.perf_counter()
    loader.load_state_dict(state)
    x, y = next(loader)
    assert time.perf_counter() - start < 0.5  # no replay of a million epochs
    check_rows(x, y)
    assert loader.epoch == 1_000_001 and loader.position == 0


def test_fixed_validation_batches_and_too_small_splits(data_dir):
    first = [x for x, _ in islice(TokenLoader(data_dir, "val", 4, 128), 5)]
    again = [x for x, _ in islice(TokenLoader(data_dir, "val", 4, 128), 5)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    with pytest.raises(ValueError, match="fewer than one global batch"):
        TokenLoader(data_dir, "val", 64, 1024)
    with pytest.raises(ValueError, match="no split 'test'"):
        TokenLoader(data_dir, "test", 1, 8)
    with pytest.raises(ValueError, match="rank must be"):
        TokenLoader(data_dir, "val", 1, 8, rank=2, world_size=2)


def test_refuses_data_of_another_tokenizer(tiny_data, tiny_tokenizer, tiny_tokenizer_dir):
    for same in (tiny_tokenizer, str(tiny_tokenizer_dir), str(tiny_data / "tokenizer")):
        x, y = next(TokenLoader(tiny_data, "train", 2, 16, tokenizer=same))
        assert x.max() < len(tiny_tokenizer)
    other = train_byte_level_bpe(generated_documents(120, seed=12), 300, min_frequency=1)
    with pytest.raises(InputError, match=re.escape(str(tiny_data))):
        TokenLoader(tiny_data, "train", 2, 16, tokenizer=other)


@pytest.fixture(scope="module")
def masked_data_dir(tmp_path_factory) -> Path:
    return write_position_split(tmp_path_factory.mktemp("masked_positions"), masks=True)


def check_masked_rows(x: torch.Tensor, y: torch.Tensor) -> None:
    """x is the window as without masks; y is the next position, or -100 where that target's mask is 0."""
    T = x.shape[1]
    positions = x[:, :1] + torch.arange(T)
    targets = positions + 1
    keep = torch.from_numpy(position_masks(STREAM_TOKENS))[targets] == 1
    assert torch.equal(x, positions)
    assert torch.equal(y, torch.where(keep, targets, torch.full_like(targets, -100)))


@pytest.mark.parametrize("shuffle", [False, True])
def test_masked_targets_ignore_tokens_outside_the_assistant(data_dir, masked_data_dir, shuffle):
    """Same windows as unmasked data; only the targets whose own mask is 0 become -100; resume is exact."""
    def loaders(path: Path) -> list[TokenLoader]:
        return [TokenLoader(path, "train", 3, 40, rank=r, world_size=2, shuffle=shuffle, seed=4) for r in (0, 1)]

    masked, plain = loaders(masked_data_dir), loaders(data_dir)
    assert [loader.masked for loader in masked + plain] == [True, True, False, False]
    steps = masked[0].steps_per_epoch + 3  # into the second epoch
    expected = []
    for _ in range(steps):
        for m, p in zip(masked, plain, strict=True):
            (x, y), (px, py) = next(m), next(p)
            check_masked_rows(x, y)
            assert torch.equal(x, px) and torch.equal(y[y != -100], py[y != -100])
            assert 0 < int((y == -100).sum()) < y.numel()
            expected.append((x, y))
    resumed = loaders(masked_data_dir)
    reference = loaders(masked_data_dir)
    for _ in range(5):
        for loader in reference:
            next(loader)
    for loader, saved in zip(resumed, reference, strict=True):
        loader.load_state_dict(torch.load(io.BytesIO(_saved(saved.state_dict())), weights_only=True))
    for step in range(5, steps):
        for rank, loader in enumerate(resumed):
            x, y = next(loader)
            ex, ey = expected[step * 2 + rank]
            assert torch.equal(x, ex) and torch.equal(y, ey)


def _saved(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()
