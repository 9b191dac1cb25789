"""The `nanogpt2` command: one verb for each job, each verb a function of the library.

    nanogpt2 quickstart --chat                            # the whole pipeline on a CPU, offline
    nanogpt2 prepare --source fineweb-edu --output-dir prepared/fineweb-edu-10B
    nanogpt2 pretrain --config configs/gpt2-124m.yaml data.path=prepared/fineweb-edu-10B
    nanogpt2 eval-hellaswag --model runs/gpt2-124m/final
    nanogpt2 sft --config configs/sft-oasst.yaml init_from=runs/gpt2-124m/final
    nanogpt2 chat --model runs/sft-oasst/final
    nanogpt2 VERB --help                                  # a verb's flags, with examples

`scripts/VERB.py` runs the same verb, so `accelerate launch scripts/pretrain.py ...` works as usual.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..utils import InputError

# verb -> (module in this package, one-line summary). A verb's module is imported only when it runs,
# so `nanogpt2 --help` answers at once; each module has `add_arguments(parser)` and `run(args) -> int`.
VERBS: dict[str, tuple[str, str]] = {
    "quickstart": ("quickstart", "prepare, pretrain, evaluate and reload a small GPT-2 on a CPU, offline"),
    "prepare": ("prepare", "tokenize FineWeb-Edu or local text into memory-mapped Arrow shards"),
    "train-tokenizer": ("train_tokenizer", "train a GPT-2-style byte-level BPE tokenizer on your text"),
    "pretrain": ("pretrain", "pretrain (or resume) a GPT-2 from a YAML preset and key=value overrides"),
    "sft": ("sft", "fine-tune a pretrained GPT-2 on conversations (init_from + chat data)"),
    "chat": ("chat", "talk to a chat model: a streaming conversation, or one reply with --prompt"),
    "eval-hellaswag": ("eval_hellaswag", "score a causal LM on HellaSwag (acc, acc_norm)"),
    "generate": ("generate", "sample text from a saved model or a Hub id"),
    "convert": ("convert", "any GPT-2 (folder, Hub id, nanoGPT .pt, llm.c .bin) to nanogpt2, or to plain GPT-2"),
    "push": ("push", "upload a run's final model or a checkpoint to the Hugging Face Hub"),
    "estimate": ("estimate", "predict a run's parameters, FLOPs, memory per GPU and time at a given MFU on a GPU"),
    "plot": ("plot", "draw a run's loss and HellaSwag curves into OUT/plots/"),
    "throughput": ("throughput", "median tokens/s, step time and MFU of a run from its metrics.jsonl"),
}


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser of `nanogpt2`, with the arguments of `verb` filled in (its module imported)."""
    parser = argparse.ArgumentParser(prog="nanogpt2", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, (module_name, summary) in VERBS.items():
        if name != verb:
            verbs.add_parser(name, help=summary)
            continue
        module = importlib.import_module(f".{module_name}", __name__)
        sub = verbs.add_parser(name, help=summary, description=module.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb; a user's mistake (`InputError`) is one line on stderr and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verb = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser(verb if verb in VERBS else None).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run_verb(verb: str) -> int:
    """`scripts/VERB.py ARGS` is `nanogpt2 VERB ARGS`."""
    return main([verb, *sys.argv[1:]])
