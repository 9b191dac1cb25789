"""The whole pipeline in one command, small enough for a laptop CPU (~5 minutes on 2 cores).

    python scripts/quickstart.py [--out runs/quickstart] [--source FILE_OR_FOLDER ...]
        [--tokenizer auto|train|PATH_OR_HUB_ID] [--vocab-size 4096] [--max-steps N]
        [--max-tokens N] [--val-tokens N] [--hellaswag PATH.jsonl] [--fresh]
        [key=value ...]

1. corpus: Python's own documentation (`nanogpt2.data.builtin_corpus`, PSF license), or your
   `.txt` / `.jsonl` / `.parquet` files with `--source`;
2. tokenizer: GPT-2's when it can be loaded (local cache or the Hub), else a byte-level BPE with
   GPT-2's pre-tokenization trained on the corpus (`--tokenizer` forces either, or names a folder);
3. data: `nanogpt2.data.prepare_data` into Arrow shards (`OUT/data`);
4. pretraining: `nanogpt2.training.train` with `configs/quickstart.yaml`, the code path of
   `scripts/pretrain.py` (val loss, HellaSwag when its data loads, samples, plots, checkpoints,
   the Hub-ready `OUT/final/`); trailing `key=value` pairs override the preset;
5. a fresh Python process loads `OUT/final` with `AutoModelForCausalLM.from_pretrained(...,
   trust_remote_code=True)` and `AutoTokenizer`, as anyone downloading it would, and generates.

Re-running reuses the corpus, tokenizer and prepared data and continues from the newest checkpoint
(a finished run only re-checks `final/`); `--fresh` deletes OUT first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the final check runs in a subprocess

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESET = REPO_ROOT / "configs" / "quickstart.yaml"
STATE_FILE = "quickstart.json"  # what an earlier run chose, so a re-run reuses it
TOKENIZER_TRAIN_CHARS = 50_000_000  # enough text for a BPE of a few thousand tokens
DEFAULT_PROMPT = "The for statement"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Prepare a corpus, pretrain a small GPT-2 on CPU, evaluate, plot, save and reload it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="overrides: dotted key=value pairs applied after configs/quickstart.yaml, "
        "e.g. model.n_layer=2 eval.every=50",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the run config")
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder")
    parser.add_argument("--source", nargs="+", default=None, metavar="FILE_OR_FOLDER",
                        help="your own .txt/.jsonl/.parquet files, folders or globs (default: Python's docs)")
    parser.add_argument("--tokenizer", default=None,
                        help="'auto' (GPT-2 if loadable, else train one; the default), 'train', or a "
                        "tokenizer folder / Hub id")
    parser.add_argument("--vocab-size", type=int, default=4096, help="size of a trained tokenizer")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="optimizer steps (default: the preset's 500, fewer for a larger vocabulary)")
    parser.add_argument("--max-tokens", type=int, default=None, help="use at most this many corpus tokens")
    parser.add_argument("--val-tokens", type=int, default=65_536,
                        help="tokens held out for validation, from the start of the corpus")
    parser.add_argument("--hellaswag", default=None, metavar="PATH",
                        help="local HellaSwag jsonl (default: the Hub's validation split, when reachable)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt of the final generation")
    parser.add_argument("--fresh", action="store_true", help="delete OUT (a quickstart folder) first")
    parser.add_argument("--load-final", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.max_steps is not None and args.max_steps <= 0:
        parser.error(f"--max-steps must be > 0, got {args.max_steps}")
    if args.vocab_size < 258:
        parser.error(f"--vocab-size must be at least 258 (256 bytes, a merge, <|endoftext|>), got {args.vocab_size}")
    return args


def heading(index: int, title: str) -> None:
    print(f"\n[{index}/5] {title}", flush=True)


def read_state(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_state(out: Path, state: dict[str, Any]) -> None:
    tmp = out / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, out / STATE_FILE)


def remove_output(out: Path) -> None:
    """`--fresh`: delete OUT, but only a folder this script made (never an unrelated one)."""
    if not out.exists():
        return
    if not (out / STATE_FILE).is_file() and any(out.iterdir()):
        raise SystemExit(f"error: --fresh refuses to delete {out}: it is not a quickstart output folder "
                         f"(no {STATE_FILE}); remove it yourself or choose another --out")
    shutil.rmtree(out)


def build_corpus(out: Path, sources: list[str] | None) -> tuple[list[str], str]:
    """The sources for prepare_data and a one-line description."""
    if sources:
        from nanogpt2.data.sources import resolve_local_files

        files = resolve_local_files(sources)  # raises naming a source that does not exist
        return [str(f) for f in files], f"your files: {len(files)} file(s) from {', '.join(sources)}"
    from nanogpt2.data.builtin_corpus import write_builtin_corpus

    path = out / "corpus" / "python_docs.jsonl"
    if not path.is_file():
        write_builtin_corpus(path)
    with open(path, encoding="utf-8") as f:
        n_docs = sum(1 for _ in f)
    size_mb = path.stat().st_size / 1e6
    return [str(path)], (f"Python's own documentation (pydoc topics + stdlib docstrings, PSF license): "
                         f"{n_docs:,} documents, {size_mb:.1f} MB in {path}")


def corpus_texts(files: list[str], limit_chars: int = TOKENIZER_TRAIN_CHARS) -> list[str]:
    """Documents of the corpus files, up to `limit_chars`, to train a tokenizer on."""
    from nanogpt2.data.sources import SkippedRecords, local_text_batches

    texts: list[str] = []
    total = 0
    for batch in local_text_batches([Path(f) for f in files], "text", "file", SkippedRecords()):
        for text in batch:
            texts.append(text)
            total += len(text)
            if total >= limit_chars:
                return texts
    return texts


def choose_tokenizer(out: Path, preference: str, files: list[str], vocab_size: int,
                     state: dict[str, Any]) -> tuple[Path, str]:
    """Save the run's tokenizer to OUT/tokenizer (reused on re-runs) and say which one it is."""
    from nanogpt2.data.train_tokenizer import resolve_tokenizer

    tokenizer_dir = out / "tokenizer"
    same_choice = (state.get("tokenizer_preference"), state.get("sources"), state.get("vocab_size")) == (
        preference, files, vocab_size)
    if same_choice and (tokenizer_dir / "tokenizer_config.json").is_file() and state.get("tokenizer"):
        return tokenizer_dir, f"{state['tokenizer']} [reused from {tokenizer_dir}]"
    shutil.rmtree(tokenizer_dir, ignore_errors=True)
    texts = corpus_texts(files) if preference in ("auto", "train") else None
    tokenizer, description = resolve_tokenizer(preference, corpus=texts, vocab_size=vocab_size)
    tokenizer.save_pretrained(str(tokenizer_dir))
    return tokenizer_dir, description


def run_config(args: argparse.Namespace, data_dir: Path, meta: dict[str, Any]) -> tuple[Any, str]:
    """The preset sized to the tokenizer, then the user's overrides; and what happens to HellaSwag."""
    from nanogpt2.training import load_config

    preset = load_config(PRESET)
    vocab_rows = -(-int(meta["tokenizer_vocab_size"]) // 64) * 64  # padded to a multiple of 64
    steps = args.max_steps or budget_steps(preset, vocab_rows)
    overrides = [
        f"out_dir={args.out}", f"data.path={data_dir}", f"model.vocab_size={vocab_rows}",
        f"train.max_steps={steps}", f"train.warmup_steps={min(preset.train.warmup_steps, steps // 10)}",
        f"eval.every={-(-steps // 4)}", f"checkpoint.every={-(-steps // 2)}",  # 4 evaluations, 2 checkpoints
    ]
    if args.hellaswag is not None:
        overrides.append(f"eval.hellaswag_path={args.hellaswag}")
    overrides += args.overrides  # the user's last
    hellaswag_overrides, hellaswag_note = hellaswag_settings(load_config(PRESET, overrides).eval)
    return load_config(PRESET, overrides + hellaswag_overrides), hellaswag_note


def budget_steps(preset: Any, vocab_rows: int) -> int:
    """The preset's steps, scaled so that a larger vocabulary costs the same compute (CPU time)."""
    from nanogpt2.training import flops_per_token

    actual = dataclasses.replace(preset.model, vocab_size=vocab_rows)
    ratio = flops_per_token(preset.model) / flops_per_token(actual)
    return max(20, round(preset.train.max_steps * ratio))


def hellaswag_settings(eval_config: Any) -> tuple[list[str], str]:
    """Overrides for HellaSwag and what will happen, decided up front (no long Hub time-outs later)."""
    if not eval_config.hellaswag:
        return [], "off (eval.hellaswag=false)"
    if eval_config.hellaswag_path is not None:
        if not Path(eval_config.hellaswag_path).is_file():
            raise SystemExit(f"error: HellaSwag file {eval_config.hellaswag_path} does not exist")
        return [], f"from {eval_config.hellaswag_path}"
    from nanogpt2.data.train_tokenizer import hub_reachable

    reachable, why = hub_reachable()
    if not reachable:
        return ["eval.hellaswag=false"], (f"skipped: its validation split comes from the Hugging Face Hub, "
                                          f"which cannot be used here ({why}); pass --hellaswag FILE.jsonl")
    return [], "from the Hugging Face Hub (Rowan/hellaswag, validation)"


def load_final_and_generate(final: Path, prompt: str, max_new_tokens: int = 48, num_samples: int = 2) -> int:
    """Load `final` as a Hub user would (no nanogpt2 import: the folder's own code) and generate."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    tokenizer = AutoTokenizer.from_pretrained(final, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(final, trust_remote_code=True).eval()
    print(f"loaded {type(model).__module__}.{type(model).__name__} "
          f"({sum(p.numel() for p in model.parameters()):,} parameters) and {type(tokenizer).__name__} "
          f"({len(tokenizer):,} tokens) from {final}")
    set_seed(0)
    input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]  # (1, P)
    max_new = min(max_new_tokens, model.config.max_position_embeddings - input_ids.shape[1])
    with torch.no_grad():
        output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                                top_k=50, max_new_tokens=max_new, num_return_sequences=num_samples,
                                pad_token_id=tokenizer.eos_token_id)  # (num_samples, P + new)
    for i, text in enumerate(tokenizer.batch_decode(output, skip_special_tokens=True), 1):
        print(f"--- sample {i}/{num_samples} ---\n{text}")
    return 0


def last_eval(metrics_path: Path) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict) and "val_loss" in parsed:
                record = parsed
    return record


def print_summary(out: Path, rows: list[tuple[str, str]], seconds: float) -> None:
    print(f"\nDone in {seconds / 60:.1f} min. Everything is under {out}/:")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def prepare(args: argparse.Namespace, out: Path) -> tuple[list[str], Path, str, Path, dict[str, Any]]:
    """Steps 1-3: corpus, tokenizer, Arrow shards (each reused when an earlier run made it)."""
    from nanogpt2.data import load_meta, prepare_data

    state = read_state(out)
    heading(1, "Corpus")
    sources, corpus_description = build_corpus(out, args.source)
    print(corpus_description)

    heading(2, "Tokenizer")
    preference = args.tokenizer or "auto"
    tokenizer_dir, tokenizer_description = choose_tokenizer(out, preference, sources, args.vocab_size, state)
    state.update(sources=sources, tokenizer_preference=preference, vocab_size=args.vocab_size,
                 tokenizer=tokenizer_description.split(" [reused")[0])
    write_state(out, state)
    print(f"using {tokenizer_description}")

    heading(3, "Data: tokenize into Arrow shards")
    data_dir = out / "data"
    prepare_data(sources, data_dir, tokenizer=str(tokenizer_dir), val_tokens=args.val_tokens,
                 max_tokens=args.max_tokens)
    return sources, tokenizer_dir, tokenizer_description, data_dir, load_meta(data_dir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load_final is not None:
        return load_final_and_generate(args.load_final, args.prompt)
    started = time.time()
    out: Path = args.out
    if args.fresh:
        remove_output(out)
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        write_state(out, {})  # marks OUT as made by this script, which --fresh may delete
    from nanogpt2.data import SourceError

    try:
        sources, tokenizer_dir, tokenizer_description, data_dir, meta = prepare(args, out)
    except FileExistsError as e:
        print(f"error: {e}\n(re-run with --fresh to start over in {out})", file=sys.stderr)
        return 2
    except (SourceError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    splits = meta["splits"]

    heading(4, "Pretraining (nanogpt2.training.train, as scripts/pretrain.py)")
    from nanogpt2.training import ConfigError, train

    try:
        config, hellaswag_note = run_config(args, data_dir, meta)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"HellaSwag: {hellaswag_note}")
    print(f"model: {config.model.n_layer} layers, {config.model.n_head} heads, width {config.model.n_embd}, "
          f"context {config.model.seq_len}; {config.train.max_steps} steps of "
          f"{config.train.total_batch_tokens:,} tokens")
    result = train(config)
    if result.final_dir is None:
        print(f"training stopped by {result.stopped_by} at step {result.step}; run the same command to continue")
        return 1
    from nanogpt2.training.plots import write_run_plots

    plots = write_run_plots(out)

    heading(5, "Load final/ in a fresh process and generate")
    check = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--load-final", str(result.final_dir),
                            "--prompt", args.prompt], check=False)
    if check.returncode != 0:
        print(f"error: loading {result.final_dir} back failed (exit code {check.returncode})", file=sys.stderr)
        return 1

    evaluation = last_eval(out / "metrics.jsonl")
    scores = f"val loss {evaluation['val_loss']:.3f}" if "val_loss" in evaluation else "no evaluation"
    if "hellaswag_acc_norm" in evaluation:
        scores += (f", HellaSwag acc_norm {evaluation['hellaswag_acc_norm']:.3f} on "
                   f"{evaluation.get('hellaswag_n', '?')} examples")
    else:
        scores += f", HellaSwag {hellaswag_note.split(':')[0]}"
    checkpoints = sorted(p.name for p in (out / "checkpoints").glob("step_*"))
    print_summary(out, [
        ("corpus", ", ".join(sources) if len(sources) <= 3 else f"{len(sources)} files"),
        ("tokenizer", f"{tokenizer_dir} ({tokenizer_description.split(' (')[0]})"),
        ("data", f"{data_dir} (train {splits['train']['tokens']:,} tokens, val {splits['val']['tokens']:,})"),
        ("run config", str(out / "config.yaml")),
        ("metrics", f"{out / 'metrics.jsonl'} ({scores} at step {result.step})"),
        ("samples", str(out / "samples.jsonl")),
        ("checkpoints", f"{out / 'checkpoints'}/ ({', '.join(checkpoints) or 'none'})"),
        ("plots", ", ".join(str(p) for p in plots) or "none"),
        ("final model", f"{result.final_dir} (AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True))"),
    ], time.time() - started)
    print(f"\nTry: python scripts/generate.py --model {result.final_dir} --prompt \"{args.prompt}\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
