"""Reward functions for DeepAnalyze trajectories: pure functions of their arguments.

Owns the format gate, answer matching (exact, numeric tolerance, DABench ``@name[value]``),
the code success ratio, the research turn bonus, the LLM-judge rubric score (the judge is
an injected callable; ``openai_judge`` makes one for any OpenAI-compatible endpoint) and
``score_trajectory``, which combines them as the reference does (shared/PROTOCOL.md,
"Training-time facts"):

- a trajectory without ``<Analyze>`` or ``<Answer>`` (or, for data and research tasks, with
  a ``<Code>`` block that is not a fenced python block) scores -1;
- QA: the mean of the answer match and, with a judge, the judged analysis score (1-5 → /5);
- data tasks and research: the mean of the judged score, the share of executions without
  an error and, for research, ``min(turns / 10, 1)``.

Must not do I/O except inside the judge callable the caller passes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyter_deepanalyze.protocol import parse_segments

Judge = Callable[[str], str]
"""Takes a rubric prompt, returns the judge model's reply text."""

TASK_KINDS = ("qa", "dabench", "data", "research")
FORMAT_FAILURE = -1.0


# ------------------------------------------------------------------------ format


def _python_fenced(block: str) -> bool:
    stripped = block.strip()
    return stripped.startswith("```python") and stripped.endswith("```") and len(stripped) > len("```python")


def code_blocks(trajectory: str) -> list[str]:
    """Contents of every ``<Code>`` block, in order (closed or not)."""
    return [s.text for s in parse_segments(trajectory) if s.tag == "Code"]


def format_ok(trajectory: str, *, require_python_fence: bool = False) -> bool:
    """The format gate: ``<Analyze>`` and ``<Answer>`` present (and fenced code if asked)."""
    tags = {s.tag for s in parse_segments(trajectory)}
    if "Analyze" not in tags or "Answer" not in tags:
        return False
    if require_python_fence:
        return all(_python_fenced(block) for block in code_blocks(trajectory))
    return True


def final_answer(trajectory: str) -> str | None:
    """Text of the last ``<Answer>`` segment, stripped; None without one."""
    answers = [s.text for s in parse_segments(trajectory) if s.tag == "Answer"]
    return answers[-1].strip() if answers else None


# ------------------------------------------------------------------- answer match

_DABENCH_ANSWER = re.compile(r"@(\w+)\[(.*?)\]")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?%?$")


def _as_float(text: str) -> float | None:
    cleaned = text.strip().replace(",", "")
    if not _NUMBER.match(cleaned):
        return None
    value = float(cleaned.rstrip("%"))
    return value if math.isfinite(value) else None


def _normalize(text: str) -> str:
    return " ".join(text.strip().strip(".").split()).lower()


def values_match(predicted: str, truth: str, *, tolerance: float = 1e-6) -> bool:
    """Equal as normalized strings, or both numbers within ``tolerance`` (absolute)."""
    if predicted.strip() == truth.strip() or _normalize(predicted) == _normalize(truth):
        return True
    a, b = _as_float(predicted), _as_float(truth)
    return a is not None and b is not None and abs(a - b) <= tolerance


def dabench_answers(text: str) -> dict[str, str]:
    """Every ``@name[value]`` in ``text``; a later one with the same name wins."""
    return {name: value for name, value in _DABENCH_ANSWER.findall(text)}


def dabench_correct(text: str, labels: Sequence[Sequence[str]]) -> list[bool]:
    """Official DABench check of each labelled sub-answer.

    A sub-answer is right when its string equals the label or both parse as floats
    differing by less than 1e-6.
    """
    found = dabench_answers(text)
    correct = []
    for name, label in labels:
        value = found.get(name)
        if value is None:
            correct.append(False)
            continue
        a, b = _as_float(value), _as_float(label)
        correct.append(value.strip() == label.strip() or (a is not None and b is not None and abs(a - b) < 1e-6))
    return correct


def answer_score(answer: str | None, truth: Any, *, kind: str = "qa", tolerance: float = 1e-6) -> float:
    """Share of the ground truth the answer gets right, in [0, 1].

    ``kind="dabench"``: ``truth`` is ``[[name, value], ...]`` and the score is the share of
    sub-answers right (PSAQ). Otherwise ``truth`` is a string (or a list of accepted
    strings) matched exactly or numerically, giving 0 or 1.
    """
    if answer is None or truth is None:
        return 0.0
    if kind == "dabench":
        labels = [tuple(pair) for pair in truth]
        if not labels:
            return 0.0
        right = dabench_correct(answer, labels)
        return sum(right) / len(right)
    accepted = truth if isinstance(truth, list) else [truth]
    return float(any(values_match(answer, str(t), tolerance=tolerance) for t in accepted))


# ----------------------------------------------------------------- execution side

def execution_failed(feedback: str) -> bool:
    """An execution whose feedback reports an error or a timeout."""
    return "[Error]:" in feedback or "[Timeout]:" in feedback


def execute_feedbacks(trajectory: str) -> list[str]:
    """Contents of the ``<Execute>`` spans of a whole trajectory."""
    return [s.text.strip("\n") for s in parse_segments(trajectory) if s.tag == "Execute"]


def code_success_ratio(feedbacks: Sequence[str]) -> float:
    """Share of executions without an error; 1.0 when nothing ran."""
    if not feedbacks:
        return 1.0
    return sum(not execution_failed(f) for f in feedbacks) / len(feedbacks)


def research_turn_bonus(turns: int, *, full_at: int = 10) -> float:
    """``min(turns / full_at, 1)``: longer explorations earn up to 1."""
    return min(max(turns, 0) / full_at, 1.0)


# -------------------------------------------------------------------------- judge

ANALYSIS_RUBRIC = """\
You are a data science evaluation assistant. Evaluate the analysis process of the model's \
solution to the data science question below against the reference solution.

Score the analysis quality from 1 to 5:
1 (adequate): basic reasoning, partially correct, several gaps.
2 (moderate): understandable but incomplete or uneven.
3 (good): reasonably correct and coherent, some details missing.
4 (strong): clear, well structured, only minor omissions.
5 (exceptional): fully correct, rigorous and comprehensive.

### [QUESTION]
{question}

### [REFERENCE SOLUTION]
{reference}

### [PREDICTED SOLUTION]
{solution}

Name some weaknesses first, then end with one line in this format: SCORE: <1-5>"""

REPORT_RUBRIC = """\
You are a data science evaluation assistant. Evaluate the data science report below, \
written for the instruction given, and the analysis that produced it.

Score it from 1 to 5 on usefulness (key insights), richness (diverse perspectives), \
soundness (correct, well planned analysis), interpretability (intermediate outputs shown) \
and readability (polished, fulfils the instruction); then give their rounded mean.

### [INSTRUCTION]
{question}

### [REFERENCE OR DATA DESCRIPTION]
{reference}

### [GENERATED REPORT AND ANALYSIS]
{solution}

Name some weaknesses first, then end with one line in this format: SCORE: <1-5>"""

_SCORE = re.compile(r"SCORE\s*:\s*\**\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)


def parse_judge_score(reply: str, *, scale: float = 5.0) -> float | None:
    """The last ``SCORE: n`` of a judge's reply, divided by ``scale`` and clipped to [0, 1]."""
    matches = _SCORE.findall(reply)
    if not matches:
        return None
    return min(max(float(matches[-1]) / scale, 0.0), 1.0)


def judge_score(
    judge: Judge,
    *,
    question: str,
    solution: str,
    reference: str = "",
    rubric: str = ANALYSIS_RUBRIC,
) -> float:
    """The judge's rubric score in [0, 1]; 0 when the reply carries no score."""
    reply = judge(rubric.format(question=question, reference=reference or "(none)", solution=solution))
    score = parse_judge_score(reply)
    return 0.0 if score is None else score


def openai_judge(
    base_url: str,
    model: str,
    *,
    api_key: str = "",
    temperature: float = 0.0,
    max_tokens: int = 1024,
    timeout: float = 120.0,
) -> Judge:
    """A judge backed by any OpenAI-compatible ``/chat/completions`` endpoint."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def judge(prompt: str) -> str:
        response = client.post(
            "/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": temperature,
                "max_tokens": max_tokens,
            },
        )
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"] or "")

    return judge


# ------------------------------------------------------------------- composition


@dataclass(frozen=True)
class RewardSpec:
    """How one task is scored (a column of the RL rows)."""

    kind: str = "qa"
    """``qa`` (exact answer), ``dabench`` (``@name[value]`` sub-answers), ``data``
    (a data task judged by rubric) or ``research`` (an open report)."""
    tolerance: float = 1e-6
    """Absolute tolerance of numeric answers (``qa``)."""
    use_judge: bool = True
    """Ask the judge when one is configured (``qa``/``dabench``: analysis score averaged
    with the answer match; ``data``/``research``: the rubric score)."""
    require_python_fence: bool | None = None
    """Format gate on ```` ```python ```` fences; None: on for ``data`` and ``research``."""

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"unknown reward kind {self.kind!r}: use one of {', '.join(TASK_KINDS)}")

    @property
    def fence_required(self) -> bool:
        if self.require_python_fence is not None:
            return self.require_python_fence
        return self.kind in ("data", "research")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> RewardSpec:
        raw = dict(raw or {})
        unknown = set(raw) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown reward setting(s): {', '.join(sorted(unknown))}")
        return cls(**raw)


@dataclass
class RewardBreakdown:
    """The reward and the parts it was made of (logged as metrics)."""

    reward: float
    format_ok: bool
    answer: float | None = None
    judged: float | None = None
    code_success: float | None = None
    turn_bonus: float | None = None
    parts: dict[str, float] = field(default_factory=dict)


def score_trajectory(
    trajectory: str,
    spec: RewardSpec,
    *,
    ground_truth: Any = None,
    question: str = "",
    feedbacks: Sequence[str] | None = None,
    turns: int | None = None,
    judge: Judge | None = None,
) -> RewardBreakdown:
    """The reference's reward for one whole trajectory (model turns and executions).

    ``feedbacks`` default to the ``<Execute>`` spans of the trajectory; ``turns`` to the
    number of model turns (one more than the executions).
    """
    if feedbacks is None:
        feedbacks = execute_feedbacks(trajectory)
    if turns is None:
        turns = len(feedbacks) + 1
    if not format_ok(trajectory, require_python_fence=spec.fence_required):
        return RewardBreakdown(FORMAT_FAILURE, False)
    answer = final_answer(trajectory)
    breakdown = RewardBreakdown(0.0, True, code_success=code_success_ratio(feedbacks))
    reference = "" if ground_truth is None else str(ground_truth)
    if spec.kind in ("qa", "dabench"):
        kind = "dabench" if spec.kind == "dabench" else "qa"
        breakdown.answer = answer_score(answer, ground_truth, kind=kind, tolerance=spec.tolerance)
        breakdown.parts["answer"] = breakdown.answer
        if judge is not None and spec.use_judge:
            breakdown.judged = judge_score(judge, question=question, solution=trajectory, reference=reference)
            breakdown.parts["judged"] = breakdown.judged
    else:
        if judge is not None and spec.use_judge:
            rubric = REPORT_RUBRIC if spec.kind == "research" else ANALYSIS_RUBRIC
            breakdown.judged = judge_score(
                judge, question=question, solution=trajectory, reference=reference, rubric=rubric
            )
            breakdown.parts["judged"] = breakdown.judged
        breakdown.parts["code_success"] = breakdown.code_success or 0.0
        if spec.kind == "research":
            breakdown.turn_bonus = research_turn_bonus(turns)
            breakdown.parts["turn_bonus"] = breakdown.turn_bonus
    breakdown.reward = sum(breakdown.parts.values()) / len(breakdown.parts)
    return breakdown
