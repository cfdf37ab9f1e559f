"""Reward functions for DeepAnalyze trajectories: pure functions of their arguments.

Owns the format gate, answer matching (exact, numeric tolerance; DABench ``@name[value]``
through the evaluation's own scorer, ``jupyter_deepanalyze.eval.scoring``, so reward and
evaluation never disagree), the code success ratio, the research turn bonus, the
LLM-judge rubric scores (the judge is an injected callable; ``openai_judge`` makes one
for any OpenAI-compatible endpoint) and ``score_trajectory``, which combines them as the
reference does (shared/PROTOCOL.md, "Training-time facts"):

- a trajectory without ``<Analyze>`` or ``<Answer>`` (or, for data and research tasks, with
  a ``<Code>`` block that is not a fenced python block) scores -1;
- QA: the mean of the answer match and, with a judge, the judged analysis score (1-5 → /5);
- data tasks and research: the mean of the judged score(s), the share of executions
  without an error and, for research, ``min(turns / 10, 1)``.

Where we and the reference differ, ``RewardOptions`` switches to the reference's way.
Must not do I/O except inside the judge callable the caller passes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jupyter_deepanalyze.eval.scoring import score_dabench
from jupyter_deepanalyze.protocol import parse_segments

Judge = Callable[[str], str]
"""Takes a rubric prompt, returns the judge model's reply text."""

TASK_KINDS = ("qa", "dabench", "data", "research")
FORMAT_FAILURE = -1.0


# ------------------------------------------------------------------------ format


def _python_fenced(block: str) -> bool:
    stripped = block.strip()
    return stripped.startswith("```python") and stripped.endswith("```") and len(stripped) > len("```python")


_EXECUTE_SPAN = re.compile(r"<Execute>.*?</Execute>", re.DOTALL)


def model_text(trajectory: str) -> str:
    """The trajectory without its ``<Execute>`` spans: what the model itself wrote.

    Code output may print tags (``<Answer>`` included); they are not the model's.
    """
    return _EXECUTE_SPAN.sub("", trajectory)


def code_blocks(trajectory: str) -> list[str]:
    """Contents of every ``<Code>`` block, in order (closed or not)."""
    return [s.text for s in parse_segments(model_text(trajectory)) if s.tag == "Code"]


def format_ok(trajectory: str, *, require_python_fence: bool = False) -> bool:
    """The format gate: ``<Analyze>`` and ``<Answer>`` present (and fenced code if asked)."""
    tags = {s.tag for s in parse_segments(model_text(trajectory))}
    if "Analyze" not in tags or "Answer" not in tags:
        return False
    if require_python_fence:
        return all(_python_fenced(block) for block in code_blocks(trajectory))
    return True


def final_answer(trajectory: str) -> str | None:
    """Text of the model's last ``<Answer>`` segment, stripped (what the evaluation
    scores); None without one."""
    answers = [s.text for s in parse_segments(model_text(trajectory)) if s.tag == "Answer"]
    return answers[-1].strip() if answers else None


# ------------------------------------------------------------------- answer match

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


def exact_answer(answer: str) -> str:
    """The reference's QA answer: the text after the first ``Answer:`` if any, stripped."""
    return answer.split("Answer:", 2)[1].strip() if "Answer:" in answer else answer


def answer_score(
    answer: str | None,
    truth: Any,
    *,
    kind: str = "qa",
    tolerance: float = 1e-6,
    match: Literal["tolerant", "exact"] = "tolerant",
) -> float:
    """Share of the ground truth the answer gets right, in [0, 1].

    ``kind="dabench"``: ``truth`` is ``[[name, value], ...]`` and the score is the share of
    sub-answers right (PSAQ), by the evaluation's own DABench scorer. Otherwise ``truth``
    is a string (or a list of accepted strings), giving 0 or 1: ``match="tolerant"``
    compares normalized text or numbers within ``tolerance``; ``match="exact"`` is the
    reference's string equality (``exact_answer``).
    """
    if answer is None or truth is None:
        return 0.0
    if kind == "dabench":
        labels = [(str(name), str(value)) for name, value in truth]
        return score_dabench(answer, labels).fraction if labels else 0.0
    accepted = truth if isinstance(truth, list) else [truth]
    if match == "exact":
        return float(any(exact_answer(answer) == str(t) for t in accepted))
    return float(any(values_match(answer, str(t), tolerance=tolerance) for t in accepted))


# ----------------------------------------------------------------- execution side

def execution_failed(feedback: str) -> bool:
    """An execution whose feedback reports an error or a timeout."""
    return "[Error]:" in feedback or "[Timeout]:" in feedback


def execute_feedbacks(trajectory: str) -> list[str]:
    """Contents of the ``<Execute>`` spans of a whole trajectory."""
    return [s.text.strip("\n") for s in parse_segments(trajectory) if s.tag == "Execute"]


def code_success_ratio(results: Sequence[bool]) -> float | None:
    """Share of executions that passed; None when nothing ran."""
    if not results:
        return None
    return sum(bool(r) for r in results) / len(results)


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

REPORT_DIMENSIONS = ("usefulness", "richness", "soundness", "interpretability", "readability")

DIMENSIONS_RUBRIC = """\
You are a data science evaluation assistant. Evaluate the data science report below, \
written for the instruction given, and the analysis that produced it.

Score each dimension from 1 (lowest) to 5 (highest):
- usefulness: does it extract and highlight the key insights of the data?
- richness: does it explore the data from diverse, meaningful perspectives?
- soundness: is the analysis accurate, well structured and logically planned?
- interpretability: do intermediate outputs make the reasoning transparent?
- readability: is the report polished, academic in style, and does it fulfil the instruction?

### [INSTRUCTION]
{question}

### [REFERENCE OR DATA DESCRIPTION]
{reference}

### [GENERATED REPORT AND ANALYSIS]
{solution}

Name some weaknesses first, then end with the scores as a JSON object in a ```json block:
{{"usefulness": <1-5>, "richness": <1-5>, "soundness": <1-5>, "interpretability": <1-5>, "readability": <1-5>}}"""
"""The reference's open-domain judging: five dimension scores, each averaged into the reward."""

_SCORE = re.compile(r"SCORE\s*:\s*\**\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)
_JSON_BLOCK = re.compile(r"```(?:json)?(.*?)```", re.DOTALL)


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


def parse_dimension_scores(reply: str, *, scale: float = 5.0) -> dict[str, float] | None:
    """The five dimension scores of a judge's reply (its last JSON block, or the reply
    itself), each divided by ``scale`` and clipped to [0, 1]; None when any is missing."""
    blocks = _JSON_BLOCK.findall(reply)
    candidate = (blocks[-1] if blocks else reply).strip()
    try:
        scores = json.loads(re.sub(r",\s*}", "}", candidate))  # judges often leave a trailing comma
        values = {name: float(scores[name]) for name in REPORT_DIMENSIONS}
    except (ValueError, TypeError, KeyError):
        return None
    if not all(math.isfinite(v) for v in values.values()):
        return None
    return {name: min(max(value / scale, 0.0), 1.0) for name, value in values.items()}


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


@dataclass(frozen=True)
class RewardOptions:
    """Where our scoring and the reference's differ: each switch names the reference's value.

    The defaults are ours; ``RewardOptions.reference()`` is the reference's recipe.
    """

    qa_match: Literal["tolerant", "exact"] = "tolerant"
    """``qa`` answers: ``tolerant`` compares normalized text and numbers within the task's
    tolerance; ``exact`` (reference) is string equality of the answer (after an
    ``Answer:`` prefix, if any) with the ground truth."""
    report_judge: Literal["overall", "dimensions"] = "overall"
    """``research`` reports: ``overall`` asks the judge for one 1-5 score; ``dimensions``
    (reference) asks for usefulness, richness, soundness, interpretability and
    readability and averages each into the reward as its own part."""
    code_success_without_executions: Literal["one", "omit"] = "one"
    """``data``/``research`` when no execution happened: ``one`` counts a perfect code
    success share; ``omit`` (reference) leaves the share out of the mean."""

    @classmethod
    def reference(cls) -> RewardOptions:
        return cls(qa_match="exact", report_judge="dimensions", code_success_without_executions="omit")


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


def _judged_parts(
    spec: RewardSpec, judge: Judge, *, question: str, solution: str, reference: str, options: RewardOptions
) -> dict[str, float]:
    """The judge's part(s) of a data or research reward."""
    if spec.kind == "research" and options.report_judge == "dimensions":
        reply = judge(DIMENSIONS_RUBRIC.format(question=question, reference=reference or "(none)", solution=solution))
        scores = parse_dimension_scores(reply)
        # An unreadable reply counts once, as 0 (the reference's failed judgement).
        return {f"judged/{name}": value for name, value in scores.items()} if scores else {"judged": 0.0}
    rubric = REPORT_RUBRIC if spec.kind == "research" else ANALYSIS_RUBRIC
    return {"judged": judge_score(judge, question=question, solution=solution, reference=reference, rubric=rubric)}


def score_trajectory(
    trajectory: str,
    spec: RewardSpec,
    *,
    ground_truth: Any = None,
    question: str = "",
    feedbacks: Sequence[str] | None = None,
    code_results: Sequence[bool] | None = None,
    turns: int | None = None,
    judge: Judge | None = None,
    options: RewardOptions = RewardOptions(),
) -> RewardBreakdown:
    """The reference's reward for one whole trajectory (model turns and executions).

    ``feedbacks`` default to the ``<Execute>`` spans of the trajectory; ``code_results``
    (whether each execution passed, as the environment judged it) to the feedbacks
    without an error; ``turns`` to the number of model turns (one more than the
    executions).
    """
    if feedbacks is None:
        feedbacks = execute_feedbacks(trajectory)
    if code_results is None:
        code_results = [not execution_failed(f) for f in feedbacks]
    if turns is None:
        turns = len(feedbacks) + 1
    if not format_ok(trajectory, require_python_fence=spec.fence_required):
        return RewardBreakdown(FORMAT_FAILURE, False)
    answer = final_answer(trajectory)
    breakdown = RewardBreakdown(0.0, True, code_success=code_success_ratio(code_results))
    reference = "" if ground_truth is None else str(ground_truth)
    if spec.kind in ("qa", "dabench"):
        kind = "dabench" if spec.kind == "dabench" else "qa"
        breakdown.answer = answer_score(
            answer, ground_truth, kind=kind, tolerance=spec.tolerance, match=options.qa_match
        )
        breakdown.parts["answer"] = breakdown.answer
        if judge is not None and spec.use_judge:
            breakdown.judged = judge_score(judge, question=question, solution=trajectory, reference=reference)
            breakdown.parts["judged"] = breakdown.judged
    else:
        if judge is not None and spec.use_judge:
            judged = _judged_parts(
                spec, judge, question=question, solution=trajectory, reference=reference, options=options
            )
            breakdown.judged = sum(judged.values()) / len(judged)
            breakdown.parts.update(judged)
        if breakdown.code_success is None and options.code_success_without_executions == "one":
            breakdown.code_success = 1.0
        if breakdown.code_success is not None:
            breakdown.parts["code_success"] = breakdown.code_success
        if spec.kind == "research":
            breakdown.turn_bonus = research_turn_bonus(turns)
            breakdown.parts["turn_bonus"] = breakdown.turn_bonus
    # A data task without a judge and without executions (omitted) has no part: 0.
    breakdown.reward = sum(breakdown.parts.values()) / len(breakdown.parts) if breakdown.parts else 0.0
    return breakdown
