"""Plots of a run's `metrics.jsonl`: loss and HellaSwag accuracy against tokens seen.

`write_run_plots(run_dir)` reads `run_dir/metrics.jsonl` and (re)writes, atomically:

* `plots/loss.png`: training loss (raw and smoothed) and validation loss against tokens, with the
  GPT-2 124M reproduction's FineWeb-Edu validation loss as a reference line when the run's data is
  comparable (FineWeb-Edu tokenized with GPT-2's tokenizer);
* `plots/hellaswag.png`: HellaSwag `acc_norm` against tokens with GPT-2 124M, GPT-3 Small and chance
  as reference lines and the run's best point annotated. Written only once the run has a HellaSwag score.

The trainer calls it at each evaluation while the file is being appended to, so reading never fails on
a partial file: torn lines are skipped, records without the needed keys are ignored, and a resumed run
(steps logged again after a restart) keeps only the records of the latest attempt. Uses matplotlib's
Agg canvas directly, without pyplot's global state.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..utils import atomic_write, read_jsonl
from .references import (
    GPT2_124M_HELLASWAG,
    GPT3_SMALL_HELLASWAG,
    HELLASWAG_CHANCE,
    REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS,
)

_TRAIN_COLOR = "#1f77b4"
_VAL_COLOR = "#d62728"
_REF_COLOR = "#555555"


@dataclass
class Series:
    """Points (tokens, value, step) of one metric, in step order with restarts resolved."""

    tokens: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)

    def add(self, step: float, tokens: float, value: float) -> None:
        # A resumed run logs again from its checkpoint's step: the new attempt replaces the old tail.
        while self.steps and self.steps[-1] >= step:
            self.steps.pop()
            self.tokens.pop()
            self.values.pop()
        self.steps.append(step)
        self.tokens.append(tokens)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class RunMetrics:
    train_loss: Series = field(default_factory=Series)
    val_loss: Series = field(default_factory=Series)
    hellaswag: Series = field(default_factory=Series)
    hellaswag_n: int | None = None


def _number(record: dict[str, Any], key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def read_metrics(path: str | os.PathLike[str]) -> RunMetrics:
    """The loss and HellaSwag series of a metrics.jsonl file (empty when it does not exist yet)."""
    metrics = RunMetrics()
    for record in read_jsonl(path):
        step, tokens = _number(record, "step"), _number(record, "tokens")
        if step is None or tokens is None:
            continue
        for key, series in (("loss", metrics.train_loss), ("val_loss", metrics.val_loss),
                            ("hellaswag_acc_norm", metrics.hellaswag)):
            value = _number(record, key)
            if value is not None:
                series.add(step, tokens, value)
        n = _number(record, "hellaswag_n")
        if n is not None:
            metrics.hellaswag_n = int(n)
    return metrics


def gpt2_reference_comparable(run_dir: str | os.PathLike[str]) -> bool:
    """Whether the run trains on FineWeb-Edu with GPT-2's tokenizer, so its val loss compares to the reproduction's.

    Reads `run_dir/config.yaml` for the data folder and that folder's `meta.json`; False whenever
    either cannot be read.
    """
    try:
        config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
        data_path = Path(config["data"]["path"]).expanduser()
        if not data_path.is_absolute() and not data_path.exists():
            data_path = Path(run_dir) / data_path
        meta = json.loads((data_path / "meta.json").read_text())
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return False
    if not isinstance(meta, dict):
        return False
    sources = json.dumps(meta.get("sources", meta.get("source", ""))).lower()
    eot_is_gpt2 = meta.get("eot_id") == 50256
    vocab_is_gpt2 = meta.get("vocab_size", meta.get("tokenizer_vocab_size", 50257)) == 50257
    return "fineweb-edu" in sources and eot_is_gpt2 and vocab_is_gpt2


def format_tokens(x: float, _pos: Any = None) -> str:
    """Axis label of a token count: 0, 250K, 1.5M, 10B."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.0f}"


def ema(values: Sequence[float], span: int) -> list[float]:
    """Bias-corrected exponential moving average (no lag at the start, unlike a plain EMA)."""
    alpha = 2.0 / (span + 1)
    out, avg, weight = [], 0.0, 0.0
    for v in values:
        avg = (1 - alpha) * avg + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(avg / weight)
    return out


def _new_figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(9, 5.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.xaxis.set_major_formatter(FuncFormatter(format_tokens))
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("tokens seen (training)")
    return fig, ax


def _focus_loss_axis(ax: Any, train: Series, val: Series, reference: float | None) -> None:
    """Clip the y axis above the bulk of the curve when the first steps would squash it.

    The loss starts near ln(vocab) and falls fast; with the full range shown the part that matters
    is a flat line. Clipping happens only when the start is 3x taller than the rest.
    """
    values = train.values + val.values
    if len(values) < 2:
        return
    bottom = min(values + ([reference] if reference is not None else []))
    # The loss after the first 10% of training: the 98th percentile of training losses (single
    # spikes do not count) and every validation point, which must stay visible.
    start = 0.1 * max(train.tokens + val.tokens)
    later_train = sorted(v for t, v in zip(train.tokens, train.values, strict=True) if t >= start)
    later_val = [v for t, v in zip(val.tokens, val.values, strict=True) if t >= start]
    focus_top = max(later_val + later_train[int(0.98 * (len(later_train) - 1)):])
    top = max(values)
    if focus_top > bottom and top - bottom > 3 * (focus_top - bottom):
        top = focus_top + 0.6 * (focus_top - bottom)
        ax.text(0.01, 0.985, f"y axis clipped: the first steps reach {max(values):.2f}",
                transform=ax.transAxes, va="top", fontsize=8, color=_REF_COLOR)
    pad = 0.04 * (top - bottom) if top > bottom else 0.1
    ax.set_ylim(bottom - pad, top + pad)


def loss_figure(metrics: RunMetrics, *, reference: bool, title: str) -> Figure | None:
    """Training and validation loss against tokens; None without any loss record."""
    train, val = metrics.train_loss, metrics.val_loss
    if not train and not val:
        return None
    fig, ax = _new_figure()
    if train:
        smoothed_label = "train loss"
        if len(train) >= 20:
            # Raw per-step loss is noisy: show it faintly and a smoothed curve over it.
            ax.plot(train.tokens, train.values, color=_TRAIN_COLOR, alpha=0.25, linewidth=0.8,
                    label="train loss (per step)")
            span = max(5, len(train) // 40)
            smoothed = ema(train.values, span)
            smoothed_label = f"train loss (EMA, span {span} steps)"
        else:
            smoothed = train.values
        ax.plot(train.tokens, smoothed, color=_TRAIN_COLOR, linewidth=1.8, label=smoothed_label)
    if val:
        ax.plot(val.tokens, val.values, color=_VAL_COLOR, marker="o", markersize=4, linewidth=1.8,
                label=f"val loss (last {val.values[-1]:.3f}, best {min(val.values):.3f})")
    if reference:
        ax.axhline(REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS, color=_REF_COLOR, linestyle="--", linewidth=1.2,
                   label=f"GPT-2 124M reproduction (one RTX 4090, 10B FineWeb-Edu tokens), val loss "
                         f"({REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS})")
    _focus_loss_axis(ax, train, val, REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS if reference else None)
    ax.set_xlim(left=0)
    ax.set_ylabel("cross-entropy loss (nats per token)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    return fig


def hellaswag_figure(metrics: RunMetrics, *, title: str) -> Figure | None:
    """HellaSwag acc_norm against tokens with reference scores; None without any score."""
    hs = metrics.hellaswag
    if not hs:
        return None
    fig, ax = _new_figure()
    n = f" on {metrics.hellaswag_n:,} examples" if metrics.hellaswag_n else ""
    ax.plot(hs.tokens, hs.values, color=_VAL_COLOR, marker="o", markersize=4, linewidth=1.8,
            label=f"this run, acc_norm{n}")
    ax.axhline(GPT3_SMALL_HELLASWAG, color="#2ca02c", linestyle="--", linewidth=1.2,
               label=f"GPT-3 Small 125M ({GPT3_SMALL_HELLASWAG})")
    ax.axhline(GPT2_124M_HELLASWAG, color=_REF_COLOR, linestyle="--", linewidth=1.2,
               label=f"GPT-2 124M ({GPT2_124M_HELLASWAG})")
    ax.axhline(HELLASWAG_CHANCE, color="#999999", linestyle=":", linewidth=1.0,
               label=f"chance ({HELLASWAG_CHANCE})")
    best = max(range(len(hs)), key=lambda i: hs.values[i])
    bx, by = hs.tokens[best], hs.values[best]
    ax.plot([bx], [by], marker="*", markersize=14, color="#ff7f0e", linestyle="none",
            label=f"best {by:.4f} at {format_tokens(bx)} tokens (step {hs.steps[best]:.0f})")
    ax.annotate(f"{by:.4f}", (bx, by), textcoords="offset points", xytext=(0, 9), ha="center",
                fontsize=9, color="#ff7f0e")
    low = min(min(hs.values), HELLASWAG_CHANCE) - 0.01
    high = max(max(hs.values), GPT3_SMALL_HELLASWAG) + 0.015
    ax.set_ylim(low, high)
    ax.set_xlim(left=0)  # the same origin as the loss plot
    ax.set_ylabel("HellaSwag accuracy (acc_norm)")
    ax.set_title(title)
    ax.legend(loc="best")  # few points: cheap, and the curve sits low or high depending on the run
    return fig


def write_run_plots(run_dir: str | os.PathLike[str], reference: bool | None = None) -> list[Path]:
    """(Re)write the PNGs of `run_dir/metrics.jsonl` into `run_dir/plots/`; returns the written paths.

    `reference`: draw the reproduction's validation-loss line; None decides from the run's data
    (`gpt2_reference_comparable`). Returns an empty list when there is nothing to plot yet.
    """
    run = Path(run_dir)
    metrics = read_metrics(run / "metrics.jsonl")
    if reference is None:
        reference = gpt2_reference_comparable(run)
    name = run.resolve().name
    figures = {
        "loss.png": loss_figure(metrics, reference=reference, title=f"{name}: loss"),
        "hellaswag.png": hellaswag_figure(metrics, title=f"{name}: HellaSwag"),
    }
    written = []
    for filename, fig in figures.items():
        if fig is not None:
            with atomic_write(run / "plots" / filename, "wb") as file:
                fig.savefig(file, format="png")
            written.append(run / "plots" / filename)
    return written
