"""The model card (`README.md`) of a trained model, from plain values: the run's config as a dict, the
data's meta.json and the last evaluation record."""

from __future__ import annotations

from typing import Any

from ..reporting.references import (
    GPT2_124M_HELLASWAG,
    GPT3_SMALL_HELLASWAG,
    REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS,
    REPRODUCTION_4090_HELLASWAG,
)


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else ("n/a" if value is None else str(value))


def _data_description(meta: dict[str, Any], fallback: str | None) -> str:
    """'FineWeb-Edu (sample-10BT)' / the local files, from the prepared data's meta.json."""
    sources = meta.get("sources") or [meta.get("source") or fallback or "unknown"]
    text = ", ".join(str(s) for s in sources)
    return f"{text} ({meta['subset']})" if meta.get("subset") else text


def render_model_card(config: dict[str, Any], *, n_params: int, steps: int, tokens: int, meta: dict[str, Any],
                      final_eval: dict[str, Any], precision: str, repo_id: str | None = None) -> str:
    """The card's markdown. `config` is `RunConfig.to_dict()`; `final_eval` the last record with `val_loss`."""
    m, t = config["model"], config["train"]
    load_from = repo_id or "path/to/final"
    train_tokens = meta.get("splits", {}).get("train", {}).get("tokens")
    data_size = f", {train_tokens:,} training tokens" if isinstance(train_tokens, int) else ""
    val_reference = (f"GPT-2 124M reproduced on 10B FineWeb-Edu tokens: {REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS} "
                     "(comparable only on FineWeb-Edu with GPT-2's tokenizer)")
    hs_reference = (f"GPT-2 124M: {GPT2_124M_HELLASWAG}, GPT-3 Small: {GPT3_SMALL_HELLASWAG}, "
                    f"10B-token reproduction: {REPRODUCTION_4090_HELLASWAG} (full 10,042-example set)")
    if final_eval.get("hellaswag_acc_norm") is None:
        hellaswag_rows = f"| HellaSwag acc_norm | not evaluated | {hs_reference} |"
    else:
        hellaswag_rows = (
            f"| HellaSwag acc_norm ({final_eval.get('hellaswag_n')} examples) "
            f"| {_fmt(final_eval['hellaswag_acc_norm'])} | {hs_reference} |\n"
            f"| HellaSwag acc | {_fmt(final_eval.get('hellaswag_acc'))} | |"
        )
    return f"""---
library_name: transformers
license: mit
tags: [gpt2, nanogpt2, causal-lm, pretraining]
pipeline_tag: text-generation
---

# nanogpt2 — GPT-2 style model trained from scratch

A {n_params / 1e6:.1f}M-parameter GPT-2 architecture pretrained with nanogpt2
(transformers model, Accelerate loop).

## Architecture

| | |
|---|---|
| layers / heads / width | {m["n_layer"]} / {m["n_head"]} / {m["n_embd"]} |
| context length | {m["seq_len"]} |
| embedding rows (padded vocabulary) | {m["vocab_size"]} |
| parameters (tied embedding counted once) | {n_params:,} |

## Data

- Data: {_data_description(meta, config["data"].get("path"))}{data_size}
- Tokenizer: `{meta.get("tokenizer_name", "n/a")}` (hash `{str(meta.get("tokenizer_hash", "n/a"))[:16]}`)
- Tokens seen: {tokens:,} ({steps:,} steps of {t["total_batch_tokens"]:,} tokens)

## Hyperparameters

AdamW (betas {t["betas"][0]}, {t["betas"][1]}, eps {t["eps"]}, weight decay {t["weight_decay"]} on matrices and
embeddings), peak learning rate {t["lr"]} after {t["warmup_steps"]} warmup steps, cosine decay to
{t["min_lr_ratio"]:g} x peak at step {t["max_steps"]}, gradient clipping {t["grad_clip"]}, micro-batch
{t["micro_batch_size"]} x {m["seq_len"]} tokens, precision `{precision}`, seed {config["seed"]}.

## Results (at step {final_eval.get("step", steps)})

| metric | this model | reference |
|---|---|---|
| validation loss | {_fmt(final_eval.get("val_loss"))} | {val_reference} |
{hellaswag_rows}

## How to load

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{load_from}", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{load_from}", trust_remote_code=True)
ids = tokenizer("Hello, I'm a language model,", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=30, do_sample=True, top_k=50)[0]))
```
"""
