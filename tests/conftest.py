"""Shared test fixtures: offline Hub, the optional ../shared reference data, tiny models."""

import os
from pathlib import Path

# Tests never touch the network; set before transformers/datasets are imported by a test module.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NANOGPT2_SHARED", REPO_ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path inside ../shared, or skip the calling test with the reason it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not available: {path} is absent (needs ../shared beside the repo)")
    return path


@pytest.fixture
def gpt2_tokenizer_dir() -> Path:
    """The real GPT-2 tokenizer folder from ../shared (skips when absent)."""
    return shared_path("gpt2-tokenizer")


@pytest.fixture
def hellaswag_val_path() -> Path:
    """1,000 real HellaSwag validation examples from ../shared (skips when absent)."""
    return shared_path("hellaswag", "hellaswag_val_1000.jsonl")


@pytest.fixture
def fineweb_jsonl_path() -> Path:
    """150 FineWeb-Edu documents as jsonl from ../shared (skips when absent)."""
    return shared_path("corpora", "fineweb_edu_150docs.jsonl")


def train_tiny_tokenizer(texts: list[str], vocab_size: int = 300):
    """A byte-level BPE with GPT-2's pre-tokenization and `<|endoftext|>` (the last id), trained on `texts`."""
    from nanogpt2.data.train_tokenizer import train_byte_level_bpe

    return train_byte_level_bpe(texts, vocab_size, min_frequency=1)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A ~300-token byte-level BPE trained on generated text (hermetic)."""
    words = ["the", "model", "learns", "to", "predict", "next", "token", "from", "text", "data", "and"]
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(40)) + "." for i in range(200)]
    return train_tiny_tokenizer(texts)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Accelerate keeps process-wide singletons; give every test a clean one so order never matters."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
