"""Reporting from a run folder: plots of metrics.jsonl (robust reading, PNG files, reference lines), the
throughput summary, and the `plot` / `throughput` verbs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from nanogpt2.cli import main
from nanogpt2.reporting import (
    GPT2_124M_HELLASWAG,
    GPT3_SMALL_HELLASWAG,
    REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS,
    summarize_throughput,
    write_run_plots,
)
from nanogpt2.reporting.plots import (
    format_tokens,
    gpt2_reference_comparable,
    hellaswag_figure,
    loss_figure,
    read_metrics,
)
from nanogpt2.utils import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TOKENS_PER_STEP = 8192


def train_record(step: int, loss: float | None = None) -> dict:
    loss = 4.0 + 6.0 * math.exp(-step / 30) if loss is None else loss
    return {"step": step, "tokens": step * TOKENS_PER_STEP, "loss": loss, "lr": 1e-3, "grad_norm": 1.0}


def eval_record(step: int, val_loss: float, hellaswag: float | None = None) -> dict:
    record = {"step": step, "tokens": step * TOKENS_PER_STEP, "val_loss": val_loss}
    if hellaswag is not None:
        record.update(hellaswag_acc=hellaswag - 0.01, hellaswag_acc_norm=hellaswag, hellaswag_n=1000)
    return record


def write_metrics(run: Path, records: list[dict], tail: str = "") -> Path:
    run.mkdir(parents=True, exist_ok=True)
    path = run / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def legend_labels(fig) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def test_read_metrics_tolerates_partial_files_and_resolves_restarts(tmp_path: Path) -> None:
    records = [train_record(s) for s in range(1, 41)] + [eval_record(20, 6.0, 0.26), eval_record(40, 5.0, 0.27)]
    # A restart from a step-30 checkpoint logs steps 31.. again, with other values.
    records += [train_record(s, loss=3.0) for s in range(31, 51)] + [eval_record(40, 4.5, 0.28)]
    records += [
        {"step": 51, "loss": 2.0},  # no tokens: cannot be placed on the axis
        {"step": 52, "tokens": 52 * TOKENS_PER_STEP, "loss": float("nan")},  # NaN: skipped
        {"event": "resumed"},  # unrelated record
        ["not", "a", "dict"],
    ]
    path = write_metrics(tmp_path, records, tail='{"step": 53, "tokens": 4341')  # line being written
    metrics = read_metrics(path)
    assert metrics.train_loss.steps == list(range(1, 51))
    assert metrics.train_loss.values[29] == pytest.approx(train_record(30)["loss"])  # before the restart
    assert metrics.train_loss.values[30:] == [3.0] * 20  # the latest attempt wins
    assert metrics.train_loss.tokens[-1] == 50 * TOKENS_PER_STEP
    assert (metrics.val_loss.steps, metrics.val_loss.values) == ([20, 40], [6.0, 4.5])
    assert metrics.hellaswag.values == [0.26, 0.28] and metrics.hellaswag_n == 1000
    assert read_metrics(tmp_path / "missing.jsonl").train_loss.values == []


def test_write_run_plots_writes_png_files_atomically(tmp_path: Path) -> None:
    records = [train_record(s) for s in range(1, 101)]
    records += [eval_record(s, 4.5 + 5 * math.exp(-s / 30), 0.25 + s / 4000) for s in (25, 50, 75, 100)]
    write_metrics(tmp_path, records, tail='{"step": 10')
    written = write_run_plots(tmp_path)
    assert written == [tmp_path / "plots" / "loss.png", tmp_path / "plots" / "hellaswag.png"]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["hellaswag.png", "loss.png"]
    # Rewriting over existing files works (called at every evaluation).
    assert write_run_plots(tmp_path) == written


def test_only_what_has_data_is_plotted(tmp_path: Path) -> None:
    assert write_run_plots(tmp_path) == []  # no metrics.jsonl yet
    write_metrics(tmp_path, [], tail='{"step": 1, "tok')
    assert write_run_plots(tmp_path) == []
    write_metrics(tmp_path, [train_record(1), train_record(2)])
    assert write_run_plots(tmp_path) == [tmp_path / "plots" / "loss.png"]  # no HellaSwag yet


def test_loss_figure_labels_and_reference_line(tmp_path: Path) -> None:
    fast_descent = [train_record(s, loss=4.0 + 6.0 * math.exp(-s / 8)) for s in range(1, 201)]
    records = fast_descent + [eval_record(100, 4.8), eval_record(200, 4.4)]
    metrics = read_metrics(write_metrics(tmp_path, records))
    fig = loss_figure(metrics, reference=False, title="run: loss")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "tokens seen (training)" and "nats per token" in ax.get_ylabel()
    labels = legend_labels(fig)
    assert any(label.startswith("train loss (EMA") for label in labels)
    assert "val loss (last 4.400, best 4.400)" in labels
    assert not any(str(REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS) in label for label in labels)
    with_reference = legend_labels(loss_figure(metrics, reference=True, title="run: loss"))
    (reference,) = [label for label in with_reference if f"({REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS})" in label]
    assert "reproduction" in reference  # not OpenAI's model: no published loss on this data exists
    # The first steps (loss ~10) are clipped so that the descent stays readable; the plot says so.
    low, high = ax.get_ylim()
    assert 4.8 < high < 6.0 and low < 4.0
    assert any("clipped" in t.get_text() for t in ax.texts)
    # A gradual descent is shown whole.
    gradual = read_metrics(write_metrics(tmp_path, [train_record(s) for s in range(1, 201)]))
    ax = loss_figure(gradual, reference=False, title="run: loss").axes[0]
    assert ax.get_ylim()[1] > train_record(1)["loss"] and not ax.texts


def test_hellaswag_figure_reference_lines_and_best_point(tmp_path: Path) -> None:
    scores = {25: 0.251, 50: 0.262, 75: 0.281, 100: 0.279}
    records = [eval_record(s, 5.0, h) for s, h in scores.items()]
    fig = hellaswag_figure(read_metrics(write_metrics(tmp_path, records)), title="run: HellaSwag")
    labels = legend_labels(fig)
    assert f"GPT-2 124M ({GPT2_124M_HELLASWAG})" in labels
    assert f"GPT-3 Small 125M ({GPT3_SMALL_HELLASWAG})" in labels
    assert f"best 0.2810 at {format_tokens(75 * TOKENS_PER_STEP)} tokens (step 75)" in labels
    assert "this run, acc_norm on 1,000 examples" in labels
    low, high = fig.axes[0].get_ylim()
    assert low < 0.25 and high > GPT3_SMALL_HELLASWAG  # both references always visible
    assert fig.axes[0].get_ylabel() == "HellaSwag accuracy (acc_norm)"


def test_format_tokens() -> None:
    assert [format_tokens(x) for x in (0, 512, 250_000, 1_500_000, 10e9)] == ["0", "512", "250K", "1.5M", "10B"]


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"source": "fineweb-edu", "sources": ["fineweb-edu"], "eot_id": 50256, "tokenizer_vocab_size": 50257}, True),
        ({"source": "local", "sources": ["docs.jsonl"], "eot_id": 50256, "tokenizer_vocab_size": 50257}, False),
        ({"source": "fineweb-edu", "sources": ["fineweb-edu"], "eot_id": 8191, "tokenizer_vocab_size": 8192}, False),
    ],
)
def test_reference_only_for_fineweb_edu_with_gpt2_tokenizer(tmp_path: Path, meta: dict, expected: bool) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text(json.dumps(meta))
    run = tmp_path / "run"
    run.mkdir()
    assert gpt2_reference_comparable(run) is False  # no config.yaml
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"path": str(data)}}))
    assert gpt2_reference_comparable(run) is expected


def test_plot_verb_and_script(tmp_path: Path, capsys) -> None:
    write_metrics(tmp_path, [train_record(s) for s in range(1, 30)] + [eval_record(29, 5.0, 0.26)])
    script = str(REPO_ROOT / "scripts" / "plot_run.py")
    done = subprocess.run([sys.executable, script, str(tmp_path), "--reference"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "plots" / "loss.png"), str(tmp_path / "plots" / "hellaswag.png")]
    missing = tmp_path / "nope"
    assert main(["plot", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing / "metrics.jsonl") in err and "Traceback" not in err
    empty = tmp_path / "empty"
    write_metrics(empty, [{"step": 1, "event": "started"}])
    assert main(["plot", str(empty), "--no-reference"]) == 1 and not (empty / "plots").exists()


def write_throughput_records(run: Path) -> None:
    records = [{"step": step, "tokens": step * 8, "loss": 1.0, "tokens_per_s": tps, "step_time_s": 1 / tps,
                "mfu": mfu} for step, (tps, mfu) in enumerate([(10.0, 0.1), (100.0, 0.4), (300.0, 0.5),
                                                               (200.0, 0.45)], start=1)]
    write_metrics(run, [*records, {"step": 4, "val_loss": 1.0}], tail='{"step": 5, "lo')


def test_throughput_summary_is_the_median_after_warmup(tmp_path: Path) -> None:
    write_throughput_records(tmp_path)
    summary = summarize_throughput(tmp_path, skip=1)
    assert summary == {"steps": 3, "first_step": 2, "last_step": 4, "tokens_per_s": 200.0, "step_time_s": 1 / 200,
                       "mfu": 0.45}
    with pytest.raises(InputError, match="after step 4"):
        summarize_throughput(tmp_path, skip=4)
    write_metrics(tmp_path, [{"step": s, "loss": 1.0, "tokens_per_s": 5.0, "step_time_s": 0.2} for s in (1, 2)])
    assert summarize_throughput(tmp_path, skip=0)["mfu"] is None  # CPU or a GPU without a known peak


def test_throughput_verb(tmp_path: Path, capsys) -> None:
    write_throughput_records(tmp_path)
    assert main(["throughput", str(tmp_path), "--skip", "1"]) == 0
    out = capsys.readouterr().out
    assert "2-4 (3)" in out and "200 tokens/s" in out and "45.0%" in out
    assert main(["throughput", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "missing" / "metrics.jsonl") in err and "Traceback" not in err
