"""One run, recorded from its events: the notebook it makes and how it ended.

Owns ``RunRecorder``, the sink every front door reads a run's result from — the CLI's
``report``, the eval runner, the magic's ``AnalysisResult`` and the server's run list —
with ``RunOutcome`` (question, model, final status, error, the report found through
``RunFinished.report_cell_id``, and the one line saying why a run did not complete),
the run's notebook (``NotebookBuilder``, when asked for) and writing it; and
``record_run``, which drives an ``Agent`` into a recorder.

Must not run anything or know about front doors (terminals, HTTP, displays).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbformat import NotebookNode

from .events import CellCreated, Event, RunFinished, RunStarted, RunStatus, from_json
from .notebook import NotebookBuilder, attach_images, write_notebook

if TYPE_CHECKING:
    from .agent import Agent, Task


@dataclass
class RunOutcome:
    """What a run was asked and how it ended (``status`` is None while it runs)."""

    run_id: str | None = None
    question: str | None = None
    model: str | None = None
    status: RunStatus | None = None
    error: str | None = None
    report: str = ""
    """The final answer (Markdown); empty when the run ended without one."""
    report_cell_id: str | None = None

    @property
    def finished(self) -> bool:
        return self.status is not None

    def reason(self, max_rounds: int | None = None) -> str | None:
        """One line saying why a finished run did not complete; None if it did (or runs on)."""
        if self.status is None or self.status == "completed":
            return None
        if self.status == "cancelled":
            return "the run was cancelled"
        if self.status == "max_rounds":
            rounds = f"after {max_rounds} rounds" if max_rounds else "at its round limit"
            return f"the run stopped {rounds} without a final answer"
        return self.error or "the run failed"


class RunRecorder:
    """Apply a run's events (objects or their JSON) in order; read ``outcome`` and ``notebook``.

    With ``notebook=False`` only the outcome is kept (the server holds the events anyway).
    """

    def __init__(self, *, notebook: bool = True) -> None:
        self.outcome = RunOutcome()
        self._builder = NotebookBuilder() if notebook else None
        self._reports: dict[str, str] = {}  # report cells' sources by cell id

    def apply(self, event: Event | Mapping[str, Any]) -> Event:
        """Record one event; returns it as an ``Event``."""
        if not isinstance(event, Event):
            event = from_json(dict(event))
        if self._builder is not None:
            self._builder.apply(event)
        outcome = self.outcome
        if isinstance(event, RunStarted):
            outcome.run_id, outcome.question, outcome.model = event.run_id, event.question, event.model
        elif isinstance(event, CellCreated):
            if event.metadata.get("deepanalyze", {}).get("role") == "report":
                self._reports[event.cell_id] = event.source
        elif isinstance(event, RunFinished):
            outcome.run_id = outcome.run_id or event.run_id
            outcome.status, outcome.error = event.status, event.error
            outcome.report_cell_id = event.report_cell_id
            outcome.report = self._reports.get(event.report_cell_id or "", "")
        return event

    @property
    def notebook(self) -> NotebookNode:
        if self._builder is None:
            raise ValueError("this recorder keeps no notebook (RunRecorder(notebook=False))")
        return self._builder.notebook

    def write(self, path: Path, *, folder: Path | None = None, html: bool = False) -> list[Path]:
        """Write the notebook (and ``.html``), with the images the report links to in
        ``folder`` (the run's working folder) embedded; returns the files written."""
        if folder is not None:
            attach_images(self.notebook, folder)
        return write_notebook(self.notebook, path, html=html)


async def record_run(
    agent: Agent,
    task: Task,
    recorder: RunRecorder | None = None,
    *,
    on_event: Callable[[Event], None] | None = None,
) -> RunRecorder:
    """Run ``task`` with ``agent`` into ``recorder`` (a new one by default), calling
    ``on_event`` with each event after it is recorded."""
    recorder = recorder if recorder is not None else RunRecorder()
    async for event in agent.run(task):
        recorder.apply(event)
        if on_event is not None:
            on_event(event)
    return recorder
