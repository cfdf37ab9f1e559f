"""Official answer scoring: DABench ``@name[value]`` sub-answers and table-QA denotations.

Owns the comparison of one final answer with its labels (``Score``) and the metrics over
many (``Metrics``: ABQ, PSAQ, UASQ). DABench is scored exactly as InfiAgent-DABench's
``eval_closed_form.py`` does it: every ``@(\\w+)\\[(.*?)\\]`` of the answer is a named
sub-answer (a repeated name keeps its last value); a sub-answer is right when its string
equals the label or both parse as floats less than 1e-6 apart. Table QA compares
normalised value lists as sets (WikiTableQuestions-style denotation accuracy).

One deliberate difference from the official script, applied by the callers: it drops
questions that got no response from the denominator; we count them as wrong.

Must not do I/O or know about models and kernels.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NAMED_ANSWER = re.compile(r"@(\w+)\[(.*?)\]")
"""The DABench answer pattern, as the official scorer writes it."""

FLOAT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SubAnswer:
    """One named part of an answer: what was expected, what was given, and the verdict."""

    name: str
    expected: str
    predicted: str | None
    correct: bool


@dataclass(frozen=True)
class Score:
    """The verdict on one task's final answer."""

    sub_answers: tuple[SubAnswer, ...] = ()

    @property
    def correct(self) -> bool:
        """Every sub-answer right (what ABQ counts)."""
        return bool(self.sub_answers) and all(s.correct for s in self.sub_answers)

    @property
    def fraction(self) -> float:
        """Share of right sub-answers (what PSAQ averages)."""
        if not self.sub_answers:
            return 0.0
        return sum(s.correct for s in self.sub_answers) / len(self.sub_answers)

    def to_json(self) -> list[dict[str, object]]:
        return [
            {"name": s.name, "expected": s.expected, "predicted": s.predicted, "correct": s.correct}
            for s in self.sub_answers
        ]


# ------------------------------------------------------------------------- DABench


def extract_named_answers(text: str) -> dict[str, str]:
    """``{name: value}`` for every ``@name[value]`` in ``text`` (the last value of a name wins)."""
    return {name: value for name, value in NAMED_ANSWER.findall(text)}


def dabench_equal(predicted: str | None, expected: str) -> bool:
    """The official comparison: equal strings, or floats less than 1e-6 apart."""
    if predicted == expected:
        return True
    if predicted is None:
        return False
    try:
        return abs(float(predicted) - float(expected)) < FLOAT_TOLERANCE
    except ValueError:
        return False


def score_dabench(answer: str, labels: Iterable[tuple[str, str]]) -> Score:
    """Score a final answer against ``common_answers`` (``[(name, value), ...]``)."""
    expected = dict(labels)  # the official scorer builds a dict too: a repeated name counts once
    given = extract_named_answers(answer)
    return Score(
        tuple(
            SubAnswer(name, value, given.get(name), dabench_equal(given.get(name), value))
            for name, value in expected.items()
        )
    )


# ------------------------------------------------------------------------ table QA

_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")
_PUNCTUATION_EDGES = "\"'`.,;:!?()[]{} "


def normalize_value(value: str) -> str | float:
    """A comparable form of one answer value: a float for numbers, else folded text.

    Numbers lose thousands separators, a trailing ``%`` and surrounding currency signs;
    text is NFKC-normalised, case-folded, whitespace-collapsed and stripped of quotes
    and edge punctuation.
    """
    text = unicodedata.normalize("NFKC", str(value)).strip()
    numeric = text.replace(",", "").replace("_", "").strip().lstrip("$€£").rstrip("%").strip()
    if _NUMBER.match(numeric):
        number = float(numeric)
        if math.isfinite(number):
            return number
    folded = " ".join(text.casefold().split()).strip(_PUNCTUATION_EDGES)
    return folded


def _values_equal(a: str | float, b: str | float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= FLOAT_TOLERANCE * max(1.0, abs(b))
    return a == b


def denotation_equal(predicted: Sequence[str], expected: Sequence[str]) -> bool:
    """Value lists equal as sets, each value normalised (numbers compared as numbers)."""
    given = _as_set(predicted)
    wanted = _as_set(expected)
    if len(given) != len(wanted):
        return False
    return all(any(_values_equal(g, w) for g in given) for w in wanted) and all(
        any(_values_equal(g, w) for w in wanted) for g in given
    )


def _as_set(values: Sequence[str]) -> list[str | float]:
    unique: list[str | float] = []
    for value in values:
        normal = normalize_value(value)
        if not any(_values_equal(normal, seen) for seen in unique):
            unique.append(normal)
    return unique


def score_table_qa(answer: str, expected: Sequence[str], name: str = "answer") -> Score:
    """Score a final answer whose values are given as ``@answer[value]`` (one per item)."""
    given = [value for tag, value in NAMED_ANSWER.findall(answer) if tag == name]
    predicted = " | ".join(given) if given else None
    correct = bool(given) and denotation_equal(given, expected)
    return Score((SubAnswer(name, " | ".join(expected), predicted, correct),))


# ------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metrics:
    """InfiAgent-DABench's three accuracies over ``n`` questions, as fractions 0–1.

    ``abq``: share of questions with every sub-answer right; ``psaq``: mean per-question
    share of right sub-answers; ``uasq``: share of all sub-answers right.
    """

    n: int
    abq: float
    psaq: float
    uasq: float
    sub_answers_correct: int
    sub_answers_total: int

    @classmethod
    def of(cls, scores: Sequence[Score]) -> Metrics:
        n = len(scores)
        correct = sum(sum(s.correct for s in score.sub_answers) for score in scores)
        total = sum(len(score.sub_answers) for score in scores)
        return cls(
            n=n,
            abq=sum(score.correct for score in scores) / n if n else 0.0,
            psaq=sum(score.fraction for score in scores) / n if n else 0.0,
            uasq=correct / total if total else 0.0,
            sub_answers_correct=correct,
            sub_answers_total=total,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "n": self.n,
            "abq": round(self.abq, 6),
            "psaq": round(self.psaq, 6),
            "uasq": round(self.uasq, 6),
            "sub_answers": {"correct": self.sub_answers_correct, "total": self.sub_answers_total},
        }
