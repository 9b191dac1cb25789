"""The `hellaswag` evaluate module: loading, its three conventions, ties, bad input, doctest."""

import doctest
import sys
from pathlib import Path

import evaluate
import pytest

from nanogpt2.evaluation import hellaswag_metric_path

REPO_METRIC = Path(__file__).resolve().parents[1] / "metrics" / "hellaswag"


@pytest.fixture(scope="module")
def metric() -> evaluate.EvaluationModule:
    return evaluate.load(hellaswag_metric_path(), keep_in_memory=True)


def test_loads_from_the_repository_folder_and_the_installed_package():
    from_repo = evaluate.load(str(REPO_METRIC))
    assert Path(hellaswag_metric_path()).joinpath("hellaswag.py").is_file()
    from_package = evaluate.load(hellaswag_metric_path())
    assert from_repo.name == from_package.name == "hellaswag"
    assert set(from_repo.features) == {"ending_logprobs", "ending_tokens", "ending_chars", "references"}


def test_doctest_examples_pass(metric):
    module = sys.modules[type(metric).__module__]
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_each_convention_picks_its_own_ending(metric):
    # Ending 0: best total (-4); ending 1: best per token (-10/5 = -2); ending 2: best per char (-9/30).
    result = metric.compute(
        ending_logprobs=[[-4.0, -10.0, -9.0, -20.0]] * 3,
        ending_tokens=[[1, 5, 3, 5]] * 3,
        ending_chars=[[5, 20, 30, 10]] * 3,
        references=[0, 1, 2],
    )
    assert result == {
        "acc": pytest.approx(1 / 3),
        "acc_norm": pytest.approx(1 / 3),
        "acc_norm_chars": pytest.approx(1 / 3),
        "n": 3,
    }
    only_norm = metric.compute(
        ending_logprobs=[[-4.0, -10.0, -9.0, -20.0]],
        ending_tokens=[[1, 5, 3, 5]],
        ending_chars=[[5, 20, 30, 10]],
        references=[1],
    )
    assert only_norm == {"acc": 0.0, "acc_norm": 1.0, "acc_norm_chars": 0.0, "n": 1}


def test_ties_go_to_the_first_ending(metric):
    tied = {
        "ending_logprobs": [[-6.0, -6.0, -6.0, -6.0]] * 2,
        "ending_tokens": [[2, 2, 2, 2]] * 2,
        "ending_chars": [[8, 8, 8, 8]] * 2,
    }
    assert metric.compute(**tied, references=[0, 0]) == {"acc": 1.0, "acc_norm": 1.0, "acc_norm_chars": 1.0, "n": 2}
    assert metric.compute(**tied, references=[1, 3]) == {"acc": 0.0, "acc_norm": 0.0, "acc_norm_chars": 0.0, "n": 2}


def test_all_correct_and_add_batch(metric):
    logprobs = [[-1.0, -9.0, -9.0, -9.0], [-9.0, -9.0, -9.0, -1.0], [-9.0, -1.0, -9.0, -9.0]]
    for row, label in zip(logprobs, [0, 3, 1], strict=True):
        metric.add_batch(
            ending_logprobs=[row], ending_tokens=[[3, 3, 3, 3]], ending_chars=[[9, 9, 9, 9]], references=[label]
        )
    assert metric.compute() == {"acc": 1.0, "acc_norm": 1.0, "acc_norm_chars": 1.0, "n": 3}


def test_empty_input_is_an_error(metric):
    with pytest.raises(ValueError, match="no examples"):
        metric.compute(ending_logprobs=[], ending_tokens=[], ending_chars=[], references=[])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"ending_logprobs": [[-1.0, -2.0]], "ending_tokens": [[1, 1, 1]], "ending_chars": [[2, 2]]}, "must match"),
        ({"ending_logprobs": [[-1.0, -2.0]], "ending_tokens": [[1, 0]], "ending_chars": [[2, 2]]}, "no tokens"),
        (
            {"ending_logprobs": [[-1.0, float("nan")]], "ending_tokens": [[1, 1]], "ending_chars": [[2, 2]]},
            "non-finite",
        ),
    ],
)
def test_inconsistent_inputs_name_the_example(metric, inputs, message):
    with pytest.raises(ValueError, match=f"example 0 .*{message}|{message}"):
        metric.compute(**inputs, references=[0])


def test_label_out_of_range_is_an_error(metric):
    with pytest.raises(ValueError, match="label 4"):
        metric.compute(ending_logprobs=[[-1.0] * 4], ending_tokens=[[1] * 4], ending_chars=[[1] * 4], references=[4])
