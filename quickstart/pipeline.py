"""The quickstart's stages, each a function that returns what it made, run and timed by `run_quickstart`.

1. corpus     Python's own documentation (`corpus.py`, PSF license), or the user's files;
2. tokenizer  GPT-2's when it can be loaded, else a byte-level BPE trained on the corpus (`tokenizer.py`);
3. data       `nanogpt2.data.prepare_data` into OUT/data;
4. pretrain   `nanogpt2.training.train` with configs/quickstart.yaml, sized to the tokenizer;
5. reload     a fresh Python process loads OUT/final as anyone downloading it would, and samples (`reload.py`);
6. chat       with `--chat` only: fine-tune OUT/final on conversations about Python into OUT/sft, measure its
              end-of-turn rate before and after, and ask it a question in a fresh process (`chat.py`).

OUT/quickstart.json keeps the choices of the last run (so a re-run reuses the corpus, tokenizer and
data, and training resumes from the newest checkpoint) and the last run's outcome and stage times.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..data import OutputExistsError, load_meta, prepare_data
from ..data.chat_template import CHAT_TOKENS
from ..data.sources import iter_texts, resolve_local_files
from ..modeling import padded_vocab_size
from ..reporting import write_run_plots
from ..training import EvalConfig, ModelConfig, RunConfig, TrainResult, flops_per_token, load_config, train
from ..utils import InputError, read_jsonl, write_json
from .chat import DEFAULT_QUESTION, ChatResult, run_chat_stage
from .corpus import write_builtin_corpus
from .tokenizer import TokenizerChoice, choose_tokenizer, hub_reachable

PRESET = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
STATE_FILE = "quickstart.json"  # marks OUT as the quickstart's (which --fresh may delete); see the docstring
TOKENIZER_TRAIN_CHARS = 50_000_000  # enough text for a BPE of a few thousand tokens
DEFAULT_PROMPT = "The for statement"
STAGES = {  # name -> heading
    "corpus": "Corpus",
    "tokenizer": "Tokenizer",
    "data": "Data: tokenize into Arrow shards",
    "pretraining": "Pretraining (nanogpt2.training.train, as `nanogpt2 pretrain`)",
    "reload": "Load final/ in a fresh process and generate",
    "chat": "Chat: fine-tune on conversations about Python (as `nanogpt2 sft`), then ask it in a fresh process",
}


@dataclass
class Options:
    """What `nanogpt2 quickstart` can be asked (its flags, one for one)."""

    out: Path = Path("runs/quickstart")
    sources: list[str] | None = None  # local files, folders, globs; None: Python's documentation
    tokenizer: str = "auto"  # "auto", "train", or a folder / Hub id
    vocab_size: int = 4096  # of a trained tokenizer
    max_steps: int | None = None  # None: the preset's, scaled to the tokenizer's size
    max_tokens: int | None = None
    val_tokens: int = 65_536
    hellaswag: str | None = None  # a local HellaSwag jsonl; None: the Hub's, when it answers
    prompt: str = DEFAULT_PROMPT
    fresh: bool = False
    overrides: list[str] = field(default_factory=list)  # key=value, applied last
    chat: bool = False  # the chat stage after the reload
    question: str = DEFAULT_QUESTION  # asked of the fine-tuned model in a fresh process
    chat_conversations: int | None = None  # at most this many; None: all the documentation gives
    sft_overrides: list[str] = field(default_factory=list)  # key=value over configs/sft-smoke.yaml

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.max_steps is not None and self.max_steps <= 0:
            raise InputError(f"--max-steps must be > 0, got {self.max_steps}")
        if self.chat_conversations is not None and self.chat_conversations <= 0:
            raise InputError(f"--chat-conversations must be > 0, got {self.chat_conversations}")
        if self.vocab_size < 258:
            raise InputError(f"--vocab-size must be at least 258 (256 bytes, a merge, <|endoftext|>), "
                             f"got {self.vocab_size}")


@dataclass
class Corpus:
    files: list[str]
    description: str


@dataclass
class HellaswagPlan:
    source: str | None  # where the examples come from; None when HellaSwag does not run
    reason: str = ""  # why it does not run
    overrides: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"from {self.source}" if self.source else f"not run, because {self.reason}"


@dataclass
class Result:
    """What a run made: OUT/corpus (built-in only), OUT/tokenizer, OUT/data, the run's own files and OUT/final."""

    corpus: Corpus
    tokenizer: TokenizerChoice
    tokenizer_reused: bool
    meta: dict[str, Any]  # OUT/data/meta.json
    hellaswag: HellaswagPlan
    train: TrainResult
    plots: list[Path]
    reloaded: bool = False
    chat: ChatResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, and "total"


@contextmanager
def timed_stage(name: str, seconds: dict[str, float], count: int = len(STAGES)) -> Iterator[None]:
    """Print the stage's heading, run it, then print and keep its elapsed time in `seconds[name]`; `count`: how
    many of STAGES this run has."""
    label = f"[{list(STAGES).index(name) + 1}/{count}]"
    print(f"\n{label} {STAGES[name]}", flush=True)
    started = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - started
    print(f"{label} {name}: {duration(seconds[name])}", flush=True)


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def read_state(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def prepare_output(out: Path, fresh: bool) -> None:
    """`fresh` deletes OUT, but only a folder the quickstart made; an empty or new OUT is marked as ours."""
    if fresh and out.exists():
        if not (out / STATE_FILE).is_file() and any(out.iterdir()):
            raise InputError(f"--fresh refuses to delete {out}: it is not a quickstart output folder "
                             f"(no {STATE_FILE}); remove it yourself or choose another --out")
        shutil.rmtree(out)
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / STATE_FILE, {})


def make_corpus(out: Path, sources: list[str] | None) -> Corpus:
    """The user's files, or Python's documentation written once to OUT/corpus/python_docs.jsonl."""
    if sources:
        files = [str(path) for path in resolve_local_files(sources)]  # InputError naming a missing source
        return Corpus(files, f"your files: {len(files)} file(s) from {', '.join(sources)}")
    path = out / "corpus" / "python_docs.jsonl"
    if not path.is_file():
        write_builtin_corpus(path)
    n_docs = len(path.read_bytes().splitlines())
    return Corpus([str(path)], f"Python's own documentation (pydoc topics + stdlib docstrings, PSF license): "
                               f"{n_docs:,} documents, {path.stat().st_size / 1e6:.1f} MB in {path}")


def corpus_texts(files: list[str], limit_chars: int = TOKENIZER_TRAIN_CHARS) -> Iterator[str]:
    """The corpus's documents until `limit_chars` characters, to train a tokenizer on."""
    total = 0
    for text in iter_texts(files):
        yield text
        total += len(text)
        if total >= limit_chars:
            return


def make_tokenizer(out: Path, options: Options, corpus: Corpus) -> tuple[TokenizerChoice, bool]:
    """OUT/tokenizer: what it is, and whether an earlier run's was reused (same choice, same corpus)."""
    tokenizer_dir, state = out / "tokenizer", read_state(out)
    asked = {"sources": corpus.files, "tokenizer_preference": options.tokenizer, "vocab_size": options.vocab_size}
    saved = isinstance(state.get("tokenizer"), dict) and (tokenizer_dir / "tokenizer_config.json").is_file()
    if saved and all(state.get(key) == value for key, value in asked.items()):
        return TokenizerChoice(**state["tokenizer"]), True
    shutil.rmtree(tokenizer_dir, ignore_errors=True)
    tokenizer, choice = choose_tokenizer(options.tokenizer, corpus_texts(corpus.files), options.vocab_size)
    tokenizer.save_pretrained(str(tokenizer_dir))
    write_json(out / STATE_FILE, {**asked, "tokenizer": dataclasses.asdict(choice)})
    return choice, False


def make_data(out: Path, options: Options, corpus: Corpus) -> dict[str, Any]:
    """OUT/data, tokenized with OUT/tokenizer (prepare_data does nothing when it already holds the same data)."""
    try:
        prepare_data(corpus.files, out / "data", tokenizer=str(out / "tokenizer"), val_tokens=options.val_tokens,
                     max_tokens=options.max_tokens)
    except OutputExistsError as error:
        raise OutputExistsError(f"{error} (or re-run with --fresh to start over in {out})") from None
    return load_meta(out / "data")


def budget_steps(preset: RunConfig, model: ModelConfig) -> int:
    """The preset's steps, scaled so that another vocabulary size costs the same compute (CPU time)."""
    return max(20, round(preset.train.max_steps * flops_per_token(preset.model) / flops_per_token(model)))


def plan_hellaswag(eval_config: EvalConfig) -> HellaswagPlan:
    """Settle HellaSwag before training: a missing file is an error now, an unreachable Hub turns it off."""
    if not eval_config.hellaswag:
        return HellaswagPlan(None, "eval.hellaswag=false")
    if eval_config.hellaswag_path is not None:
        if not Path(eval_config.hellaswag_path).is_file():
            raise InputError(f"HellaSwag file {eval_config.hellaswag_path} does not exist")
        return HellaswagPlan(eval_config.hellaswag_path)
    reachable, why = hub_reachable()
    if not reachable:
        return HellaswagPlan(None, f"its validation split comes from the Hugging Face Hub, which cannot be used here "
                                   f"({why}); pass --hellaswag FILE.jsonl", ["eval.hellaswag=false"])
    return HellaswagPlan("the Hugging Face Hub (Rowan/hellaswag, validation)")


def run_config(options: Options, tokenizer_size: int) -> tuple[RunConfig, HellaswagPlan]:
    """configs/quickstart.yaml sized to the tokenizer (vocabulary rows, steps, eval and checkpoint intervals),
    then the user's overrides."""
    preset = load_config(PRESET, [])
    # Spare rows for the chat markers, so `--chat` (or a later `nanogpt2 sft`) needs no embedding resize.
    model = dataclasses.replace(preset.model, vocab_size=padded_vocab_size(tokenizer_size + len(CHAT_TOKENS)))
    steps = options.max_steps or budget_steps(preset, model)
    overrides = [
        f"out_dir={options.out}", f"data.path={options.out / 'data'}", f"model.vocab_size={model.vocab_size}",
        f"train.max_steps={steps}", f"train.warmup_steps={min(preset.train.warmup_steps, steps // 10)}",
        f"eval.every={-(-steps // 4)}", f"checkpoint.every={-(-steps // 2)}",  # 4 evaluations, 2 checkpoints
        *([f"eval.hellaswag_path={options.hellaswag}"] if options.hellaswag is not None else []),
        *options.overrides,  # the user's last
    ]
    plan = plan_hellaswag(load_config(PRESET, overrides).eval)
    return load_config(PRESET, overrides + plan.overrides), plan


def reload_final(final: Path, prompt: str) -> bool:
    """Load `final` in a fresh Python process (its own code, not this package's) and sample from it."""
    done = subprocess.run([sys.executable, "-m", "nanogpt2.quickstart.reload", "--", str(final), prompt], check=False)
    return done.returncode == 0


def run_quickstart(options: Options) -> Result | None:
    """The stages, each printed with its elapsed time, then a summary of where everything went.

    None when training stopped early (a signal): the same command continues it."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer is used before processes fork
    started = time.perf_counter()
    out = options.out
    prepare_output(out, options.fresh)
    seconds: dict[str, float] = {}
    stage = partial(timed_stage, seconds=seconds, count=len(STAGES) if options.chat else len(STAGES) - 1)
    with stage("corpus"):
        corpus = make_corpus(out, options.sources)
        print(corpus.description)
    with stage("tokenizer"):
        choice, reused = make_tokenizer(out, options, corpus)
        print(f"using {choice}" + (f" [reused from {out / 'tokenizer'}]" if reused else ""))
    with stage("data"):
        meta = make_data(out, options, corpus)
    with stage("pretraining"):
        config, hellaswag = run_config(options, int(meta["tokenizer_vocab_size"]))
        print(f"HellaSwag: {hellaswag}")
        print(f"model: {config.model.n_layer} layers, {config.model.n_head} heads, width {config.model.n_embd}, "
              f"context {config.model.seq_len}; {config.train.max_steps} steps of "
              f"{config.train.total_batch_tokens:,} tokens")
        trained = train(config)
        if trained.final_dir is None:
            print(f"training stopped by {trained.stopped_by} at step {trained.step}; run the same command to continue")
            return None
        plots = write_run_plots(out)
    result = Result(corpus, choice, reused, meta, hellaswag, trained, plots)
    with stage("reload"):
        result.reloaded = reload_final(trained.final_dir, options.prompt)
    if options.chat and result.reloaded:
        with stage("chat"):
            result.chat = run_chat_stage(out, trained.final_dir, options.question, options.sft_overrides,
                                         options.chat_conversations)
        if result.chat is None:
            return None
    result.seconds = {**seconds, "total": time.perf_counter() - started}
    write_json(out / STATE_FILE, {**read_state(out), "last_run": outcome(result)})
    if result.reloaded:
        print_summary(out, result, options.prompt)
    else:
        print(f"error: loading {trained.final_dir} back in a fresh process failed (see above)", file=sys.stderr)
    return result


def outcome(result: Result) -> dict[str, Any]:
    """The last run in plain values (OUT/quickstart.json's "last_run")."""
    return {"step": result.train.step, "final_dir": str(result.train.final_dir), "reloaded": result.reloaded,
            "tokenizer_reused": result.tokenizer_reused, "hellaswag_source": result.hellaswag.source,
            "seconds": {name: round(seconds, 1) for name, seconds in result.seconds.items()},
            **({"chat": result.chat.outcome()} if result.chat else {})}


def print_summary(out: Path, result: Result, prompt: str) -> None:
    splits = result.meta["splits"]
    evaluation = next((r for r in reversed(read_jsonl(out / "metrics.jsonl")) if "val_loss" in r), {})
    scores = f"val loss {evaluation['val_loss']:.3f}" if evaluation else "no evaluation"
    if "hellaswag_acc_norm" in evaluation:
        scores += (f", HellaSwag acc_norm {evaluation['hellaswag_acc_norm']:.3f} "
                   f"on {evaluation.get('hellaswag_n')} examples")
    elif result.hellaswag.source is None:
        scores += ", HellaSwag not run"
    checkpoints = ", ".join(sorted(path.name for path in (out / "checkpoints").glob("step_*"))) or "none"
    files = result.corpus.files
    rows = [
        ("corpus", ", ".join(files) if len(files) <= 3 else f"{len(files)} files"),
        ("tokenizer", f"{out / 'tokenizer'} ({result.tokenizer.source}, {result.tokenizer.vocab_size:,} tokens)"),
        ("data", f"{out / 'data'} (train {splits['train']['tokens']:,} tokens, val {splits['val']['tokens']:,})"),
        ("run config", str(out / "config.yaml")),
        ("metrics", f"{out / 'metrics.jsonl'} ({scores} at step {result.train.step})"),
        ("samples", str(out / "samples.jsonl")),
        ("checkpoints", f"{out / 'checkpoints'}/ ({checkpoints})"),
        ("plots", ", ".join(str(path) for path in result.plots) or "none"),
        ("final model", f"{result.train.final_dir} (AutoModelForCausalLM, trust_remote_code=True)"),
        *([("chat model", f"{result.chat.train.final_dir} (end-of-turn rate {result.chat.eot_rate_before:.2f} "
                          f"before fine-tuning, {result.chat.eot_rate_after:.2f} after)")] if result.chat else []),
        ("stage times", ", ".join(f"{name} {duration(s)}" for name, s in result.seconds.items() if name != "total")),
    ]
    print(f"\nDone in {duration(result.seconds['total'])}. Everything is under {out}/:")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(f'\nTry: nanogpt2 generate --model {result.train.final_dir} --prompt "{prompt}"')
    if result.chat:
        question = shlex.quote(result.chat.answer["question"])  # backticks and quotes survive the shell
        print(f"     nanogpt2 chat --model {result.chat.train.final_dir} --prompt {question}")
