"""The quickstart's chat stage (`nanogpt2 quickstart --chat`): fine-tune its model to answer questions.

Sub-steps, each timed (OUT/quickstart.json, "last_run" -> "chat" -> "seconds"):

1. corpus  conversations about Python from its own documentation (`chat_corpus.py`), OUT/chat/conversations.jsonl,
           leaving out the subjects of the evaluation prompts and of the final question;
2. data    `nanogpt2.data.prepare_chat_data` into OUT/chat/data, with the quickstart's tokenizer plus the chat
           markers (the quickstart's vocabulary keeps spare rows for them, so no embedding is resized);
3. before  the end-of-turn rate of the pretrained model on `eval.chat_prompts` of configs/sft-smoke.yaml, with the
           functions the training loop evaluates chat data with (`nanogpt2.evaluation.chat_replies`);
4. sft     `nanogpt2.training.train` with configs/sft-smoke.yaml from OUT/final into OUT/sft (its metrics.jsonl
           logs `eot_rate` at each evaluation; the last one is the rate after);
5. answer  a fresh Python process loads OUT/sft/final and answers one question through its chat template.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import load_data_tokenizer, load_meta, prepare_chat_data
from ..evaluation import chat_replies, end_of_turn_rate
from ..training import RunConfig, TrainResult, load_config, train
from ..utils import InputError, read_jsonl, sha256_file
from ..utils.models import load_model_and_tokenizer
from .chat_corpus import held_out_subjects, write_chat_corpus

SFT_PRESET = Path(__file__).resolve().parents[1] / "configs" / "sft-smoke.yaml"
DEFAULT_QUESTION = "What does `json.dumps` do?"


@dataclass
class ChatResult:
    """What the chat stage made and measured; `answer` is what the fresh process wrote (see `reload.py`)."""

    conversations: int
    eot_rate_before: float
    eot_rate_after: float  # the SFT's last evaluation
    train: TrainResult
    answer: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def outcome(self) -> dict[str, Any]:
        """In plain values, for OUT/quickstart.json."""
        return {"conversations": self.conversations, "eot_rate_before": self.eot_rate_before,
                "eot_rate_after": self.eot_rate_after, "final_dir": str(self.train.final_dir),
                "answer": self.answer, "seconds": {name: round(s, 1) for name, s in self.seconds.items()}}


@contextmanager
def timed_step(name: str, seconds: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - started
    print(f"  chat {name}: {seconds[name]:.1f} s", flush=True)


def sft_config(out: Path, final: Path, overrides: list[str]) -> RunConfig:
    return load_config(SFT_PRESET, [f"init_from={final}", f"data.path={out / 'chat' / 'data'}",
                                    f"out_dir={out / 'sft'}", *overrides])


def eot_rate_of(final: Path, data: Path, config: RunConfig) -> float:
    """The end-of-turn rate of `final` before fine-tuning, as the SFT's first evaluation would see it: with the
    chat data's tokenizer, whose markers take spare rows that the model may now predict."""
    model, _ = load_model_and_tokenizer(str(final))
    tokenizer = load_data_tokenizer(data)
    model.config.tokenizer_vocab_size = max(model.config.num_real_tokens, len(tokenizer))
    replies = chat_replies(model, tokenizer, config.eval.chat_prompts, max_new_tokens=config.eval.max_new_tokens)
    for reply in replies[:2]:
        print(f"    User: {reply.prompt}\n    Assistant: {reply.text[:200]!r}{'' if reply.ended else ' (no end)'}")
    return end_of_turn_rate(replies)


def ask_in_fresh_process(folder: Path, question: str, answer_file: Path) -> dict[str, Any]:
    """`reload.py --chat` in a new interpreter (the folder's own model code); what it wrote to `answer_file`."""
    answer_file.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "nanogpt2.quickstart.reload", "--chat", "--json", str(answer_file),
                           "--", str(folder), question], check=False)  # "--": a question may start with "-"
    if done.returncode != 0 or not answer_file.is_file():
        raise RuntimeError(f"answering in a fresh process failed for {folder} (exit {done.returncode}; see above)")
    return json.loads(answer_file.read_text(encoding="utf-8"))


def run_chat_stage(out: Path, final: Path, question: str, overrides: list[str],
                   max_conversations: int | None = None) -> ChatResult | None:
    """The sub-steps above; None when the SFT stopped early (the same command continues it)."""
    seconds: dict[str, float] = {}
    config = sft_config(out, final, overrides)
    if not config.eval.chat_prompts:
        raise InputError(f"eval.chat_prompts: empty in {SFT_PRESET} and the overrides; the chat stage needs prompts")
    data = Path(config.data.path)
    with timed_step("corpus", seconds):
        corpus = out / "chat" / "conversations.jsonl"
        earlier = sha256_file(corpus) if corpus.is_file() else None
        held_out = held_out_subjects([*config.eval.chat_prompts, question])
        n_conversations = write_chat_corpus(corpus, held_out=held_out, max_conversations=max_conversations)
        if sha256_file(corpus) != earlier:  # other conversations: an earlier run's data and fine-tune are stale
            for stale in (data, Path(config.out_dir)):
                if stale.resolve().is_relative_to(out.resolve()):  # never a folder --sft-set pointed elsewhere
                    shutil.rmtree(stale, ignore_errors=True)
        print(f"  {n_conversations:,} conversations about Python's documentation in {corpus}")
    with timed_step("data", seconds):
        prepare_chat_data([str(corpus)], data, tokenizer=str(out / "tokenizer"), max_length=config.model.seq_len,
                          verbose=False)
        meta = load_meta(data)
        train_split, val_split = meta["splits"]["train"], meta["splits"]["val"]
        print(f"  {data}: train {train_split['documents']:,} conversations ({train_split['tokens']:,} tokens), "
              f"val {val_split['documents']:,}; dropped: {meta['dropped']}")
    with timed_step("before", seconds):
        before = eot_rate_of(final, data, config)
        print(f"  end-of-turn rate before fine-tuning: {before:.2f} on {len(config.eval.chat_prompts)} prompts")
    with timed_step("sft", seconds):
        trained = train(config)
    if trained.final_dir is None:
        print(f"fine-tuning stopped by {trained.stopped_by} at step {trained.step}; run the same command to continue")
        return None
    metrics = Path(config.out_dir) / "metrics.jsonl"
    evaluations = [r for r in read_jsonl(metrics) if "eot_rate" in r]
    if not evaluations:
        raise RuntimeError(f"the fine-tune logged no eot_rate in {metrics}")
    after = evaluations[-1]["eot_rate"]
    print(f"  end-of-turn rate: {before:.2f} before fine-tuning, {after:.2f} after ({trained.step} steps)")
    result = ChatResult(n_conversations, before, after, trained)
    with timed_step("answer", seconds):
        result.answer = ask_in_fresh_process(trained.final_dir, question, out / "chat" / "answer.json")
    result.seconds = seconds
    return result
