"""One run, recorded from its events: the notebook it makes and how it ended.

Owns ``RunRecorder``, the sink every front door reads a run's result from — the CLI's
``report``, the eval runner, the magic's ``AnalysisResult`` and the server's run list —
with ``RunOutcome`` (question, model, final status, error, the report found through
``RunFinished.report_cell_id``, and the one line saying why a run did not complete),
the run's notebook (``NotebookBuilder``, when asked for; on a notebook that holds
earlier runs when continuing one) and writing it with its exports, the kernelspec of
the kernel used and the run's conversation (``metadata.deepanalyze.conversation``, what
``recorded_conversation`` reads back to continue it); and ``record_run``, which drives
an ``Agent`` into a recorder.

Must not run anything or know about front doors (terminals, HTTP, displays).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
from nbformat import NotebookNode

from .artifacts import Artifact, RunFiles
from .conversation import Conversation
from .events import Artifacts, CellCreated, Event, RunFinished, RunStarted, RunStatus, from_json
from .notebook import NotebookBuilder, attach_images, kernel_metadata, write_notebook

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
    parent_run_id: str | None = None
    """Set for a follow-up: the run whose conversation it continued."""
    files: list[Artifact] = field(default_factory=list)
    """The files the run wrote in its working folder (its ``artifacts`` events)."""

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

    With ``notebook=False`` only the outcome is kept (the server holds the events anyway);
    ``existing`` is a notebook the run's cells are added to (a report being continued).
    """

    def __init__(self, *, notebook: bool = True, existing: NotebookNode | None = None) -> None:
        self.outcome = RunOutcome()
        self._builder = NotebookBuilder(existing) if notebook else None
        self._reports: dict[str, str] = {}  # report cells' sources by cell id
        self._files = RunFiles()
        self.conversation: Conversation | None = None
        """The run's messages as sent (set by ``record_run``): a follow-up continues them."""

    def apply(self, event: Event | Mapping[str, Any]) -> Event:
        """Record one event; returns it as an ``Event``."""
        if not isinstance(event, Event):
            event = from_json(dict(event))
        if self._builder is not None:
            self._builder.apply(event)
        outcome = self.outcome
        if isinstance(event, RunStarted):
            outcome.run_id, outcome.question, outcome.model = event.run_id, event.question, event.model
            outcome.parent_run_id = event.parent_run_id
        elif isinstance(event, Artifacts):
            self._files.add(Artifact.from_json(f) for f in event.files)
            outcome.files = self._files.files
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

    def write(
        self,
        path: Path,
        *,
        folder: Path | None = None,
        exports: Iterable[str] = (),
        kernel_name: str | None = None,
    ) -> list[Path]:
        """Write the notebook, with the images the report links to in ``folder`` (the
        run's working folder) embedded, the kernelspec of ``kernel_name`` and the run's
        conversation, then its ``exports`` (``exports.EXPORT_FORMATS``) beside it;
        returns the files written."""
        notebook = self.notebook
        if folder is not None:
            attach_images(notebook, folder)
        if kernel_name:
            notebook.metadata.update(nbformat.from_dict(kernel_metadata(kernel_name)))
        if self.conversation is not None:
            run = notebook.metadata.setdefault("deepanalyze", {})
            run["conversation"] = {
                "run_id": self.conversation.run_id,
                "messages": [dict(m) for m in self.conversation.messages],
            }
        written = [write_notebook(notebook, path)]
        formats = list(exports)
        if formats:
            from .exports import export_beside

            written += export_beside(notebook, path, formats)
        return written


def recorded_conversation(notebook: NotebookNode) -> Conversation | None:
    """The conversation a report notebook recorded (``RunRecorder.write``), or None."""
    recorded = notebook.get("metadata", {}).get("deepanalyze", {}).get("conversation")
    if not isinstance(recorded, Mapping) or not isinstance(recorded.get("run_id"), str):
        return None
    messages = recorded.get("messages")
    if not isinstance(messages, list) or not all(
        isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        return None
    return Conversation.of(recorded["run_id"], messages)


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
    recorder.conversation = agent.conversation()
    return recorder
