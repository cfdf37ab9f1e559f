"""What ``%analyze`` returns: ``AnalysisResult``.

Owns the result object — the run's events, its status, error and report (as the
core's ``RunRecorder`` read them), ``to_notebook()``, and its display: the run's MIME bundle, shown
again when the result is displayed after the magic's own cell has finished.

Must not run anything.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from ..notebook import events_to_notebook
from .render import RunDocument, run_bundle


@dataclass
class AnalysisResult:
    """What ``%analyze`` returns: the run's events, its status and its report."""

    run_id: str
    question: str
    status: str
    events: list[dict[str, Any]] = field(repr=False)
    error: str | None = None
    report: str = field(default="", repr=False)
    """The final answer (Markdown); empty when the run ended without one."""
    # True while the magic's own cell, which already shows the run live, is running:
    # displaying the result there again (as the cell's value) would show it twice.
    _shown_in_cell: bool = field(default=False, repr=False, compare=False)

    def to_notebook(self) -> Any:
        """The run as an nbformat notebook (the core's ``NotebookBuilder``)."""
        return events_to_notebook(self.events)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return run_bundle(RunDocument.from_events(self.events))

    def _repr_markdown_(self) -> str:
        return self.report or f"*DeepAnalyze run {self.status}; no report.*"

    def _ipython_display_(self) -> None:
        if self._shown_in_cell:
            return
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)

    def __repr__(self) -> str:
        blocks = sum(1 for e in self.events if e.get("type") == "cell" and e.get("cell_type") == "code")
        return (
            f"<AnalysisResult {self.status}: {blocks} code blocks, report of {len(self.report)} "
            f"characters; run {self.run_id}>"
        )


def forget_after_cell(shell: Any, result: AnalysisResult) -> None:
    """Once the magic's cell has finished, displaying ``result`` shows it again."""

    def forget(*_: Any) -> None:
        result._shown_in_cell = False
        with contextlib.suppress(ValueError):
            shell.events.unregister("post_run_cell", forget)

    shell.events.register("post_run_cell", forget)
