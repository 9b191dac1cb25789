"""HellaSwag accuracy under three scoring conventions, as an `evaluate` metric.

The metric reduces per-ending scores that a language model produced (the total log-likelihood of
each ending, its length in tokens and its length in characters) to accuracies. It does not run a
model: `nanogpt2.evaluation.score_hellaswag` (or any other scorer) produces the inputs.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_CITATION = """\
@inproceedings{zellers2019hellaswag,
    title={HellaSwag: Can a Machine Really Finish Your Sentence?},
    author={Zellers, Rowan and Holtzman, Ari and Bisk, Yonatan and Farhadi, Ali and Choi, Yejin},
    booktitle={Proceedings of the 57th Annual Meeting of the Association for Computational Linguistics},
    year={2019}
}
"""

_DESCRIPTION = """\
HellaSwag is a four-way multiple-choice benchmark of commonsense sentence completion: given a
context, pick the ending a human wrote among three adversarially generated ones. A language model
answers by scoring each ending's likelihood given the context; the metric turns those scores into
accuracies under three conventions that differ only in how an ending's log-likelihood is
normalised for its length:

- `acc`: the ending with the highest total log-likelihood.
- `acc_norm`: the ending with the lowest mean per-token loss (total log-likelihood divided by the
  ending's number of tokens), the convention of build-nanogpt and llm.c.
- `acc_norm_chars`: the ending with the highest log-likelihood per character of the ending (the
  separating space not counted), the `acc_norm` of lm-evaluation-harness.

Ties go to the first ending, as with `numpy.argmax`.
"""

_KWARGS_DESCRIPTION = """
Args:
    ending_logprobs (`list` of `list` of `float`): for each example, the total log-likelihood
        (natural log, summed over the ending's tokens) of each ending given the context.
    ending_tokens (`list` of `list` of `int`): for each example, the number of tokens scored in
        each ending (positive).
    ending_chars (`list` of `list` of `int`): for each example, the number of characters of each
        ending without the space that separates it from the context (positive).
    references (`list` of `int`): the index of the correct ending of each example.

Returns:
    acc (`float`): fraction of examples whose correct ending has the highest total log-likelihood.
    acc_norm (`float`): fraction whose correct ending has the lowest mean per-token loss.
    acc_norm_chars (`float`): fraction whose correct ending has the highest log-likelihood per character.
    n (`int`): number of examples.

Examples:

    >>> import importlib.resources
    >>> import evaluate
    >>> hellaswag = evaluate.load(str(importlib.resources.files("nanogpt2.metrics") / "hellaswag"))
    >>> results = hellaswag.compute(
    ...     ending_logprobs=[[-12.0, -9.0, -20.0, -15.0], [-8.0, -10.0, -9.0, -30.0]],
    ...     ending_tokens=[[4, 3, 10, 5], [4, 5, 3, 10]],
    ...     ending_chars=[[20, 12, 50, 25], [10, 26, 14, 52]],
    ...     references=[2, 1],
    ... )
    >>> print(results)
    {'acc': 0.0, 'acc_norm': 0.5, 'acc_norm_chars': 1.0, 'n': 2}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Hellaswag(evaluate.Metric):
    """Accuracy of a language model's ending choice on HellaSwag, under three length normalisations."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "ending_logprobs": datasets.Sequence(datasets.Value("float64")),
                    "ending_tokens": datasets.Sequence(datasets.Value("int64")),
                    "ending_chars": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://rowanzellers.com/hellaswag/", "https://arxiv.org/abs/1905.07830"],
        )

    def _compute(
        self,
        ending_logprobs: list[list[float]],
        ending_tokens: list[list[int]],
        ending_chars: list[list[int]],
        references: list[int],
    ) -> dict[str, float | int]:
        n = len(references)
        if n == 0:
            raise ValueError("HellaSwag metric: no examples given (all inputs are empty)")
        _check_shapes(ending_logprobs, ending_tokens, ending_chars, references)

        correct_acc = correct_norm = correct_chars = 0
        for logprobs, tokens, chars, label in zip(
            ending_logprobs, ending_tokens, ending_chars, references, strict=True
        ):
            logprobs_arr = np.asarray(logprobs, dtype=np.float64)
            # np.argmax returns the first maximum: ties go to the first ending.
            correct_acc += int(np.argmax(logprobs_arr)) == label
            # Highest mean log-likelihood per token == lowest mean per-token loss.
            correct_norm += int(np.argmax(logprobs_arr / np.asarray(tokens, dtype=np.float64))) == label
            correct_chars += int(np.argmax(logprobs_arr / np.asarray(chars, dtype=np.float64))) == label
        return {
            "acc": correct_acc / n,
            "acc_norm": correct_norm / n,
            "acc_norm_chars": correct_chars / n,
            "n": n,
        }


def _check_shapes(
    ending_logprobs: list[list[float]],
    ending_tokens: list[list[int]],
    ending_chars: list[list[int]],
    references: list[int],
) -> None:
    """Raise a ValueError naming the first example whose inputs are inconsistent."""
    for i, (logprobs, tokens, chars, label) in enumerate(
        zip(ending_logprobs, ending_tokens, ending_chars, references, strict=True)
    ):
        if not logprobs:
            raise ValueError(f"HellaSwag metric: example {i} has no endings")
        if not len(logprobs) == len(tokens) == len(chars):
            raise ValueError(
                f"HellaSwag metric: example {i} has {len(logprobs)} ending_logprobs, {len(tokens)} "
                f"ending_tokens and {len(chars)} ending_chars; they must match"
            )
        if not 0 <= label < len(logprobs):
            raise ValueError(f"HellaSwag metric: example {i} has label {label} outside [0, {len(logprobs)})")
        if min(tokens) <= 0 or min(chars) <= 0:
            raise ValueError(f"HellaSwag metric: example {i} has an ending with no tokens or no characters")
        if not np.all(np.isfinite(logprobs)):
            raise ValueError(f"HellaSwag metric: example {i} has a non-finite log-likelihood {logprobs}")
