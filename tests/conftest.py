"""Shared test fixtures: offline Hub, the optional ../shared reference data, a tiny tokenizer and tiny
prepared data made once per session, and a clean Accelerate state for every test.

Tests that read ../shared carry `@pytest.mark.needs_shared` (tests using the `gpt2_tokenizer_dir`,
`hellaswag_val_path` or `fineweb_jsonl_path` fixtures get it automatically). Without ../shared they
are skipped, and the summary says how many.
"""

import json
import os
import random
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
SHARED_FIXTURES = {"gpt2_tokenizer_dir", "hellaswag_val_path", "fineweb_jsonl_path"}


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_shared: reads reference data from ../shared (skipped when absent)")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"needs ../shared reference data ({SHARED} is absent)")
    for item in items:
        if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.needs_shared)
        if item.get_closest_marker("needs_shared") and not SHARED.is_dir():
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    reports = [r for key in ("passed", "failed", "skipped") for r in terminalreporter.stats.get(key, [])
               if getattr(r, "when", "call") in ("call", "setup") and "needs_shared" in r.keywords]
    skipped = {r.nodeid for r in reports if r.skipped}
    ran = {r.nodeid for r in reports if not r.skipped and r.when == "call"}
    if skipped or ran:
        terminalreporter.write_line(
            f"../shared reference data: {len(ran)} test(s) ran on it, {len(skipped)} skipped "
            f"({'present' if SHARED.is_dir() else 'absent: ' + str(SHARED)})"
        )


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared reference data ({path} is absent)")
    return path


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir() -> Path:
    """The real GPT-2 tokenizer folder from ../shared."""
    return shared_file("gpt2-tokenizer")


@pytest.fixture(scope="session")
def hellaswag_val_path() -> Path:
    """1,000 real HellaSwag validation examples from ../shared."""
    return shared_file("hellaswag", "hellaswag_val_1000.jsonl")


@pytest.fixture(scope="session")
def fineweb_jsonl_path() -> Path:
    """150 FineWeb-Edu documents as jsonl from ../shared."""
    return shared_file("corpora", "fineweb_edu_150docs.jsonl")


_SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "a small bird", "the teacher", "our model"]
_VERBS = ["sees", "likes", "reads", "finds", "builds", "writes about", "walks past"]
_OBJECTS = ["a red ball", "the river", "an apple", "the green house", "a long book", "the sea", "some bread"]


def generated_documents(n_docs: int = 400, seed: int = 0) -> list[str]:
    """Short documents of simple sentences: enough structure for a tiny model's loss to fall."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        sentences = [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}."
                     for _ in range(rng.randint(2, 6))]
        docs.append(" ".join(s.capitalize() for s in sentences))
    return docs


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A 300-id byte-level BPE with GPT-2's pre-tokenization, `<|endoftext|>` last (hermetic)."""
    from nanogpt2.data import train_byte_level_bpe

    return train_byte_level_bpe(generated_documents(), 300, min_frequency=1)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_tokenizer")
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_data(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """Prepared data (train/val/tokenizer/meta.json) of the generated documents, made once."""
    from nanogpt2.data import prepare_data

    root = tmp_path_factory.mktemp("tiny_data")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in generated_documents()))
    return prepare_data([str(corpus)], root / "prepared", tokenizer=str(tiny_tokenizer_dir), val_tokens=2048,
                        verbose=False)


def reset_accelerate() -> None:
    """Forget Accelerate's process-wide singletons, so the next Accelerator builds its own state."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    reset_accelerate()
    yield
    reset_accelerate()


@pytest.fixture(scope="session")
def reference_run(tiny_data, tmp_path_factory) -> Path:
    """The tiny training run of `_train_helpers.TINY_OVERRIDES`: 8 uninterrupted steps, evaluations and
    checkpoints at 4 and 8 (both kept). Tests copy from it; none may change it."""
    from _train_helpers import tiny_config, train_in_process

    out = tmp_path_factory.mktemp("reference") / "run"
    train_in_process(tiny_config(tiny_data, out, "checkpoint.keep_last=2"))
    return out


def generated_conversations(n: int = 300, seed: int = 0) -> list[dict]:
    """One-turn conversations in the `messages` format: a question about a sentence, answered from it."""
    rng = random.Random(seed)
    conversations = []
    for _ in range(n):
        subject, verb, obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        conversations.append({"messages": [
            {"role": "user", "content": f"What {verb.split()[0].removesuffix('s')}s {subject}?"},
            {"role": "assistant", "content": f"{subject.capitalize()} {verb} {obj}."},
        ]})
    return conversations


@pytest.fixture(scope="session")
def tiny_chat_data(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """Prepared conversations (`nanogpt2 prepare --format chat`) with the tiny tokenizer, made once."""
    from nanogpt2.data import prepare_chat_data

    root = tmp_path_factory.mktemp("tiny_chat_data")
    corpus = root / "conversations.jsonl"
    corpus.write_text("".join(json.dumps(c) + "\n" for c in generated_conversations()))
    return prepare_chat_data([str(corpus)], root / "prepared", tokenizer=str(tiny_tokenizer_dir), max_length=64,
                             val_fraction=0.1, verbose=False)
