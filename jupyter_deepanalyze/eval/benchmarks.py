"""Benchmark loaders: questions, their data files, their labels and how to score them.

Owns the on-disk formats and the prompts: InfiAgent-DABench (``questions.jsonl``,
``labels.jsonl``, ``tables/``; the question with its constraints and answer format) and
a generic table-QA format other sets plug into (one ``questions.jsonl`` of ``{id,
question, files, answers}``; values normalised, lists compared as sets).

Must not run anything: the runner does that.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .scoring import Score, score_dabench, score_table_qa

SHARED_ENV = "DEEPANALYZE_SHARED"


class BenchmarkError(ValueError):
    """The benchmark's data is missing or malformed, or a selection names unknown tasks."""


@dataclass(frozen=True)
class BenchTask:
    """One question: the prompt the agent gets, the files its kernel sees, the labels."""

    id: str
    prompt: str
    files: tuple[Path, ...]
    labels: tuple[Any, ...]
    level: str | None = None
    concepts: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        """The id as a safe file name (trajectory, notebook, working folder)."""
        return task_slug(self.id)


def task_slug(task_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", task_id).lstrip(".") or "_"


class Benchmark(Protocol):
    """A loaded benchmark: its tasks in order and its official scorer."""

    name: str
    data_dir: Path
    tasks: list[BenchTask]
    sub_answer_metrics: bool
    """True when PSAQ/UASQ mean something (several named sub-answers per question)."""

    def score(self, task: BenchTask, answer: str) -> Score: ...


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BenchmarkError(f"missing {path}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise BenchmarkError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise BenchmarkError(f"{path}:{number}: expected a JSON object")
        yield record


def _field(record: dict[str, Any], name: str, path: Path) -> Any:
    if name not in record:
        raise BenchmarkError(f"{path}: a record lacks {name!r}: {json.dumps(record)[:120]}")
    return record[name]


def _check_unique(tasks: Sequence[BenchTask], path: Path) -> None:
    seen: dict[str, str] = {}
    for task in tasks:
        if task.slug in seen:
            raise BenchmarkError(f"{path}: ids {seen[task.slug]!r} and {task.id!r} collide")
        seen[task.slug] = task.id


# ------------------------------------------------------------------------ DABench


def dabench_prompt(question: str, constraints: str, answer_format: str) -> str:
    """The question with its constraints and answer format (InfiAgent-DABench's fields)."""
    return (
        f"Question: {question.strip()}\n"
        f"Constraints: {constraints.strip()}\n"
        f"Format: {answer_format.strip()}\n"
        'Your final answer must contain every "@answer_name[answer]" of the format, '
        "in the order given."
    )


def default_dabench_dir() -> Path:
    """``$DEEPANALYZE_SHARED/benchmarks/dabench``, else ``../shared/benchmarks/dabench``."""
    return Path(os.environ.get(SHARED_ENV, "../shared")).expanduser() / "benchmarks" / "dabench"


class DABench:
    """InfiAgent-DABench (closed-form questions on CSV tables), scored officially."""

    name = "dabench"
    sub_answer_metrics = True

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else default_dabench_dir()
        if not (self.data_dir / "questions.jsonl").is_file():
            raise BenchmarkError(
                f"no DABench data at {self.data_dir}: pass --data DIR "
                "(a folder with questions.jsonl, labels.jsonl and tables/)"
            )
        questions_path = self.data_dir / "questions.jsonl"
        labels_path = self.data_dir / "labels.jsonl"
        labels = {
            str(_field(r, "id", labels_path)): tuple(
                (str(name), str(value)) for name, value in _field(r, "common_answers", labels_path)
            )
            for r in _read_jsonl(labels_path)
        }
        tasks = []
        for record in _read_jsonl(questions_path):
            task_id = str(_field(record, "id", questions_path))
            if task_id not in labels:
                raise BenchmarkError(f"{labels_path}: no labels for question {task_id}")
            tasks.append(
                BenchTask(
                    id=task_id,
                    prompt=dabench_prompt(
                        _field(record, "question", questions_path),
                        record.get("constraints", ""),
                        record.get("format", ""),
                    ),
                    files=(self.data_dir / "tables" / _field(record, "file_name", questions_path),),
                    labels=labels[task_id],
                    level=record.get("level"),
                    concepts=tuple(record.get("concepts", ())),
                )
            )
        _check_unique(tasks, questions_path)
        self.tasks = tasks

    def score(self, task: BenchTask, answer: str) -> Score:
        return score_dabench(answer, task.labels)


# ------------------------------------------------------------------------ table QA

TABLE_QA_INSTRUCTION = (
    "Give the final answer as @answer[value]; if the answer is a list, write one "
    "@answer[value] per item."
)


class TableQA:
    """Generic table QA: ``DIR/questions.jsonl`` lines ``{id, question, files, answers}``.

    ``files`` (or ``file_name``) are paths relative to ``DIR``; ``answers`` is a value or
    a list of values; optional ``level`` and ``concepts`` feed the breakdowns. A task is
    right when the ``@answer[...]`` values of the final answer equal ``answers`` as a set,
    numbers compared as numbers and text case- and punctuation-insensitively.
    """

    name = "tableqa"
    sub_answer_metrics = False

    def __init__(self, data_dir: Path | None) -> None:
        if data_dir is None:
            raise BenchmarkError("tableqa needs --data DIR (a folder with questions.jsonl)")
        self.data_dir = Path(data_dir)
        path = self.data_dir / "questions.jsonl"
        tasks = []
        for record in _read_jsonl(path):
            files = record.get("files", record.get("file_name"))
            if files is None:
                raise BenchmarkError(f"{path}: a record lacks 'files': {json.dumps(record)[:120]}")
            answers = _field(record, "answers", path)
            answers = [answers] if isinstance(answers, (str, int, float)) else list(answers)
            if not answers:
                raise BenchmarkError(f"{path}: question {record.get('id')} has no answers")
            concepts = record.get("concepts", ())
            tasks.append(
                BenchTask(
                    id=str(_field(record, "id", path)),
                    prompt=f"{str(_field(record, 'question', path)).strip()}\n{TABLE_QA_INSTRUCTION}",
                    files=tuple(self.data_dir / f for f in ([files] if isinstance(files, str) else files)),
                    labels=tuple(str(a) for a in answers),
                    level=record.get("level"),
                    concepts=(concepts,) if isinstance(concepts, str) else tuple(concepts),
                )
            )
        _check_unique(tasks, path)
        self.tasks = tasks

    def score(self, task: BenchTask, answer: str) -> Score:
        return score_table_qa(answer, task.labels)


BENCHMARKS: dict[str, type[DABench] | type[TableQA]] = {"dabench": DABench, "tableqa": TableQA}


def open_benchmark(name: str, data_dir: Path | None = None) -> Benchmark:
    try:
        cls = BENCHMARKS[name]
    except KeyError:
        raise BenchmarkError(f"unknown benchmark {name!r}: use {' or '.join(BENCHMARKS)}") from None
    return cls(data_dir)


def select_tasks(
    tasks: Sequence[BenchTask], ids: Sequence[str] | None = None, limit: int | None = None
) -> list[BenchTask]:
    """The tasks named by ``ids`` (in benchmark order), then the first ``limit`` of them."""
    selected = list(tasks)
    if ids:
        known = {task.id for task in tasks}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise BenchmarkError(f"no such task id: {', '.join(unknown[:10])}")
        wanted = set(ids)
        selected = [task for task in tasks if task.id in wanted]
    if limit is not None:
        selected = selected[:limit]
    return selected
