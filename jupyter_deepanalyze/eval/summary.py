"""An evaluation's summary: metrics overall, by level and by concept, and the chart.

Owns ``summary.json``'s shape (``n``; ``abq``, ``psaq``, ``uasq`` as fractions 0–1;
``accuracy`` (= ABQ); status counts; breakdowns; model; timings) and ``accuracy.png``
(accuracy by level and by concept, drawn with matplotlib's Agg canvas).

Failed tasks are in ``n`` and count as wrong (the official DABench script instead drops
questions without a response from the denominator).

Must not run tasks.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .benchmarks import Benchmark, BenchTask
from .scoring import Metrics, Score

LEVEL_ORDER = ("easy", "medium", "hard")


class TaskOutcome(Protocol):
    """What the summary reads of one finished task (the runner's ``TaskRecord`` is one)."""

    @property
    def status(self) -> str: ...
    @property
    def score(self) -> Score: ...
    @property
    def error(self) -> str | None: ...
    @property
    def timings(self) -> Mapping[str, float]: ...
    @property
    def resumed(self) -> bool:
        """Recorded by an earlier run (its time is not this run's)."""


def _group_metrics(groups: Mapping[str, list[Score]], order: Sequence[str]) -> dict[str, dict[str, object]]:
    return {name: Metrics.of(groups[name]).to_json() for name in order}


def _ordered_levels(levels: Sequence[str]) -> list[str]:
    known = [level for level in LEVEL_ORDER if level in levels]
    return known + sorted(set(levels) - set(known))


def summarize(
    benchmark: Benchmark,
    tasks: Sequence[BenchTask],
    records: Mapping[str, TaskOutcome],
    *,
    model: str,
    timings: Mapping[str, float],
    parity: bool = False,
) -> dict[str, Any]:
    """The summary of the selected ``tasks`` that have a record (finished ones)."""
    done = [(task, records[task.id]) for task in tasks if task.id in records]
    scores = [record.score for _, record in done]
    metrics = Metrics.of(scores)
    by_level: dict[str, list[Score]] = {}
    by_concept: dict[str, list[Score]] = {}
    for task, record in done:
        if task.level:
            by_level.setdefault(task.level, []).append(record.score)
        for concept in task.concepts:  # a question counts for each of its concepts
            by_concept.setdefault(concept, []).append(record.score)
    walls = [r.timings.get("wall_s", 0.0) for _, r in done if not r.resumed]
    ran = int(timings.get("tasks_run", 0))
    tasks_wall = float(timings.get("tasks_wall_s", 0.0))
    summary: dict[str, Any] = {
        "benchmark": benchmark.name,
        "data": str(benchmark.data_dir),
        "model": model,
        "parity": parity,
        "n": metrics.n,
        "selected": len(tasks),
        "complete": metrics.n == len(tasks),
        "accuracy": round(metrics.abq, 6),
    }
    if benchmark.sub_answer_metrics:
        summary.update(
            abq=round(metrics.abq, 6),
            psaq=round(metrics.psaq, 6),
            uasq=round(metrics.uasq, 6),
            sub_answers={"correct": metrics.sub_answers_correct, "total": metrics.sub_answers_total},
        )
    summary.update(
        correct=sum(score.correct for score in scores),
        statuses=dict(Counter(record.status for _, record in done)),
        failed_count_as_wrong=True,
        by_level=_group_metrics(by_level, _ordered_levels(list(by_level))),
        by_concept=_group_metrics(by_concept, sorted(by_concept)),
        timings={
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in timings.items()},
            "task_wall_s_median": round(statistics.median(walls), 3) if walls else None,
            "tasks_per_min": round(ran / tasks_wall * 60, 2) if ran and tasks_wall > 0 else None,
        },
        tasks=[
            {
                "id": task.id,
                "status": record.status,
                "correct": record.score.correct,
                "fraction": round(record.score.fraction, 6),
                **({"error": record.error} if record.error else {}),
            }
            for task, record in done
        ],
        pending=[task.id for task in tasks if task.id not in records],
    )
    return summary


def write_chart(summary: Mapping[str, Any], path: Path) -> Path:
    """Bar charts of accuracy by level and by concept (``k/n`` on each bar) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [
        ("by level", summary.get("by_level") or {}),
        ("by concept", summary.get("by_concept") or {}),
    ]
    panels = [(title, groups) for title, groups in panels if groups] or [
        ("overall", {"all": {"n": summary["n"], "abq": summary["accuracy"]}})
    ]
    heights = [max(1.6, 0.45 * len(groups) + 1.0) for _, groups in panels]
    figure = Figure(figsize=(8, sum(heights) + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for axis, (title, groups) in zip(axes, panels, strict=True):
        names = list(groups)[::-1]
        values = [float(groups[name]["abq"]) for name in names]
        counts = [int(groups[name]["n"]) for name in names]
        bars = axis.barh(names, values, color="#4C72B0")
        for bar, value, count in zip(bars, values, counts, strict=True):
            right = round(value * count)
            axis.text(
                min(value, 1.0) + 0.01,
                bar.get_y() + bar.get_height() / 2,
                f"{value:.0%} ({right}/{count})",
                va="center",
                fontsize=8,
            )
        axis.set_xlim(0, 1.18)
        axis.set_xlabel("accuracy (all sub-answers right)")
        axis.set_title(f"Accuracy {title}", fontsize=10, loc="left")
    metrics = " · ".join(
        f"{name.upper()} {summary[name]:.1%}" for name in ("abq", "psaq", "uasq") if name in summary
    ) or f"accuracy {summary['accuracy']:.1%}"
    figure.suptitle(f"{summary['benchmark']} · {summary['model']} · n={summary['n']} · {metrics}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
