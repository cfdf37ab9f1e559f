"""The evaluation runner: many benchmark tasks, K at a time, on a warm kernel pool.

Owns running each task with the core ``Agent`` on a pooled kernel whose working folder
holds the task's files, and writing what it did to ``OUT``:

- ``trajectories/ID.jsonl``: the task's events, one JSON object per line, then one
  ``{"type": "eval_result", ...}`` record (status, error, answer, per-sub-answer
  scoring, timings, and the conversation ``messages``). A task is done when that
  record is there: a rerun skips it (resume); an interrupted task has none and runs again.
- ``notebooks/ID.ipynb``: the run as a notebook (the core's ``RunRecorder``).
- ``summary.json`` and ``accuracy.png`` (``summary.py``).

A task that crashes (model error, dead kernel, anything the harness hits) is recorded as
``failed`` with its error and scored as wrong; the run goes on.

Must not re-implement the agent, scoring, notebook building or the reading of a run's
outcome (``recorder.RunRecorder``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agent import Agent, Task
from ..config import DeepAnalyze
from ..events import Event
from ..execution.pool import KernelPool
from ..llm import ChatModel
from ..notebook import attach_images
from ..recorder import RunRecorder, record_run
from .benchmarks import Benchmark, BenchTask
from .scoring import Score, SubAnswer
from .summary import summarize, write_chart
from .timing import TimedExecutor, TimedModel

log = logging.getLogger(__name__)

RESULT_TYPE = "eval_result"
RUN_FILE = "run.json"


class EvalOutputError(ValueError):
    """``OUT`` holds another benchmark's or another model's results."""


@dataclass
class TaskRecord:
    """The outcome of one task, as its trajectory's final line stores it."""

    task_id: str
    status: str
    score: Score
    answer: str = ""
    error: str | None = None
    level: str | None = None
    concepts: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    resumed: bool = False

    @property
    def correct(self) -> bool:
        return self.score.correct

    def to_json(self, benchmark: str, model: str, messages: Sequence[dict[str, str]]) -> dict[str, Any]:
        return {
            "type": RESULT_TYPE,
            "benchmark": benchmark,
            "task_id": self.task_id,
            "model": model,
            "status": self.status,
            "error": self.error,
            "answer": self.answer,
            "correct": self.correct,
            "fraction": self.score.fraction,
            "sub_answers": self.score.to_json(),
            "level": self.level,
            "concepts": list(self.concepts),
            "timings": self.timings,
            "messages": list(messages),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskRecord:
        subs = tuple(
            SubAnswer(s["name"], s["expected"], s.get("predicted"), bool(s["correct"]))
            for s in data.get("sub_answers", ())
        )
        return cls(
            task_id=str(data["task_id"]),
            status=data["status"],
            score=Score(subs),
            answer=data.get("answer", ""),
            error=data.get("error"),
            level=data.get("level"),
            concepts=tuple(data.get("concepts", ())),
            timings=dict(data.get("timings", {})),
            resumed=True,
        )


def _last_line(path: Path, block: int = 1 << 16) -> bytes:
    """The last non-empty line of a file, read from its end (trajectories can be large)."""
    with path.open("rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        data = b""
        while position > 0:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
            stripped = data.rstrip(b"\r\n")
            if b"\n" in stripped:
                return stripped.rsplit(b"\n", 1)[1]
        return data.strip()


def read_record(path: Path) -> TaskRecord | None:
    """The final record of a trajectory file, or None when the task did not finish."""
    try:
        data = json.loads(_last_line(path))
        return TaskRecord.from_json(data) if data.get("type") == RESULT_TYPE else None
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):  # cut short or foreign: run again
        return None


ProgressCallback = Callable[[TaskRecord], None]


class EvalRunner:
    """Runs ``tasks`` of ``benchmark`` with ``model``, ``concurrency`` at a time, into ``out``."""

    def __init__(
        self,
        benchmark: Benchmark,
        tasks: Sequence[BenchTask],
        *,
        config: DeepAnalyze,
        model: ChatModel,
        out: Path,
        concurrency: int = 1,
        kernel_name: str = "python3",
        retry_failed: bool = False,
        on_result: ProgressCallback | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.benchmark = benchmark
        self.tasks = list(tasks)
        self.config = config
        self.model = model
        self.out = Path(out)
        self.concurrency = concurrency
        self.kernel_name = kernel_name
        self.retry_failed = retry_failed
        self.on_result = on_result
        self.records: dict[str, TaskRecord] = {}
        self.pool_start_s = 0.0
        self._agents: set[Agent] = set()
        self._pending: list[BenchTask] | None = None
        self._stopping = False

    # ------------------------------------------------------------------ paths

    def trajectory_path(self, task: BenchTask) -> Path:
        return self.out / "trajectories" / f"{task.slug}.jsonl"

    def notebook_path(self, task: BenchTask) -> Path:
        return self.out / "notebooks" / f"{task.slug}.ipynb"

    # ------------------------------------------------------------------ public

    def prepare(self) -> list[BenchTask]:
        """Check ``out`` belongs to this benchmark and model; load finished tasks.

        Returns the tasks still to run (resume: finished ones are skipped).
        """
        self.out.mkdir(parents=True, exist_ok=True)
        identity = {"benchmark": self.benchmark.name, "model": self.model.name}
        run_file = self.out / RUN_FILE
        if run_file.exists():
            try:
                previous = json.loads(run_file.read_text(encoding="utf-8"))
            except ValueError:
                previous = {}
            for key, value in identity.items():
                if previous.get(key) not in (None, value):
                    raise EvalOutputError(
                        f"{self.out} holds results of {key} {previous[key]!r}, not {value!r}: "
                        "pass another --out"
                    )
        run_file.write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")
        self.records.clear()
        pending = []
        for task in self.tasks:
            record = read_record(self.trajectory_path(task))
            if record is not None and not (self.retry_failed and record.status == "failed"):
                self.records[task.id] = record
            else:
                pending.append(task)
        self._pending = pending
        return pending

    async def run(self) -> dict[str, Any]:
        """Run every unfinished task (``prepare`` first if not done); write and return the summary."""
        started = time.perf_counter()
        pending = self._pending if self._pending is not None else self.prepare()
        tasks_started = started
        if pending and not self._stopping:
            pool = KernelPool(
                min(self.concurrency, len(pending)),
                kernel_name=self.kernel_name,
                executor_options={"feedback": self.config.feedback_options()},
            )
            try:
                await pool.start()
                tasks_started = time.perf_counter()
                self.pool_start_s = tasks_started - started
                queue: asyncio.Queue[BenchTask] = asyncio.Queue()
                for task in pending:
                    queue.put_nowait(task)
                await asyncio.gather(*(self._worker(pool, queue) for _ in range(pool.size)))
            finally:
                await pool.close()
        finished = time.perf_counter()
        ran = [r for r in self.records.values() if not r.resumed]
        summary = summarize(
            self.benchmark,
            self.tasks,
            self.records,
            model=self.model.name or self.model.spec,
            timings={
                "wall_s": finished - started,
                "pool_start_s": self.pool_start_s,
                "tasks_wall_s": finished - tasks_started if ran else 0.0,
                "tasks_run": len(ran),
                "concurrency": self.concurrency,
            },
        )
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        write_chart(summary, self.out / "accuracy.png")
        return summary

    def stop(self) -> None:
        """Start no new task and cancel the running ones (they stay unfinished: resumable)."""
        self._stopping = True
        for agent in list(self._agents):
            agent.cancel()

    # ------------------------------------------------------------------ tasks

    async def _worker(self, pool: KernelPool, queue: asyncio.Queue[BenchTask]) -> None:
        while not self._stopping and not queue.empty():
            task = queue.get_nowait()
            record = await self._run_task(pool, task)
            if record is None:  # stopped mid-task
                continue
            self.records[task.id] = record
            if self.on_result is not None:
                self.on_result(record)

    async def _run_task(self, pool: KernelPool, task: BenchTask) -> TaskRecord | None:
        path = self.trajectory_path(task)
        path.parent.mkdir(parents=True, exist_ok=True)
        model = TimedModel(self.model)
        executor: TimedExecutor | None = None
        recorder = RunRecorder()
        messages: list[dict[str, str]] = []
        crash: str | None = None
        started = time.perf_counter()
        with path.open("w", encoding="utf-8") as trajectory:

            def write(event: Event) -> None:
                trajectory.write(json.dumps(event.to_json()) + "\n")
                trajectory.flush()  # a running task can be followed with tail -f

            try:
                async with pool.session(task.files, name=f"task-{task.slug}") as kernel:
                    if self._stopping:  # stopped while this task waited for its kernel
                        return None
                    executor = TimedExecutor(kernel.executor)
                    agent = Agent.from_config(self.config, model, executor)
                    self._agents.add(agent)
                    try:
                        await record_run(agent, Task(task.prompt, kernel.files), recorder, on_event=write)
                    finally:
                        self._agents.discard(agent)
                        messages = agent.messages
                    attach_images(recorder.notebook, kernel.workdir)
            except Exception as exc:  # recorded as this task's failure; the run goes on
                if recorder.outcome.finished:  # the run had ended; only returning the kernel failed
                    log.warning("task %s: returning its kernel failed: %s", task.id, exc)
                else:
                    log.info("task %s crashed: %s", task.id, exc)
                    crash = f"{type(exc).__name__}: {exc}"
            outcome = recorder.outcome
            status, error = (outcome.status, outcome.error) if outcome.finished else ("failed", crash)
            if status == "cancelled" and self._stopping:
                return None  # no final record: a resumed run does this task again
            if status in ("failed", "cancelled"):
                status, answer = "failed", ""  # a failed task is scored as wrong
            elif outcome.report_cell_id is not None:
                answer = outcome.report
            else:
                answer = _last_assistant_text(messages)
            record = TaskRecord(
                task_id=task.id,
                status=status or "failed",
                score=self.benchmark.score(task, answer),
                answer=answer,
                error=error,
                level=task.level,
                concepts=task.concepts,
                timings={
                    "wall_s": round(time.perf_counter() - started, 4),
                    "model_s": round(model.seconds, 4),
                    "code_s": round(executor.seconds if executor else 0.0, 4),
                    "model_turns": model.turns,
                    "executions": executor.executions if executor else 0,
                },
            )
            trajectory.write(
                json.dumps(record.to_json(self.benchmark.name, self.model.name, messages)) + "\n"
            )
        if recorder.notebook.cells:
            try:
                recorder.write(self.notebook_path(task))
            except Exception as exc:  # the scored result stands without its notebook
                log.warning("task %s: could not write its notebook: %s", task.id, exc)
        return record


def _last_assistant_text(messages: Sequence[dict[str, str]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "assistant":
            return message.get("content", "")
    return ""
