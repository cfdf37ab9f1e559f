"""What ``%analyze`` returns: ``AnalysisResult``.

Owns the result object — the run's events, its status, error and report (as the
core's ``RunRecorder`` read them), the files it wrote, ``to_notebook()``, ``ask()`` (a
follow-up question continuing its conversation in the same namespace), and its display:
the run's MIME bundle, shown again when the result is displayed after the magic's own
cell has finished.

Must not run anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..artifacts import Artifact
from ..conversation import Conversation
from ..notebook import events_to_notebook
from .line import MagicArguments
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
    files: list[Artifact] = field(default_factory=list, repr=False)
    """The files the run's code created or modified in the working folder."""
    parent_run_id: str | None = None
    """Set for a follow-up: the run it continued."""
    variables: tuple[str, ...] = field(default=(), repr=False)
    """The variables the run was about (a follow-up describes them again, as they are then)."""
    conversation: Conversation | None = field(default=None, repr=False, compare=False)
    """The messages the model was sent; ``ask`` continues them."""
    _follow_up: Callable[[AnalysisResult, MagicArguments], AnalysisResult | None] | None = field(
        default=None, repr=False, compare=False
    )
    # True while the magic's own cell, which already shows the run live, is running:
    # displaying the result there again (as the cell's value) would show it twice.
    _shown_in_cell: bool = field(default=False, repr=False, compare=False)

    def ask(
        self,
        question: str,
        *variables: str,
        model: str | None = None,
        max_rounds: int | None = None,
        approve: bool = False,
    ) -> AnalysisResult | None:
        """Ask a follow-up question: the model continues this run's conversation, in the
        same namespace (what this run's code created is still there), shown live.

        ``variables`` are described to the model as they are now (default: this run's).
        Returns the follow-up's ``AnalysisResult``, which can be asked in turn.
        """
        from IPython.core.error import UsageError

        if self._follow_up is None:
            raise UsageError("this result cannot be continued here (it comes from another session)")
        if not isinstance(question, str) or not question.strip():
            raise UsageError("ask() needs a question")
        names = tuple(variables) or tuple(self.variables)
        arguments = MagicArguments(names, question.strip(), model, max_rounds, approve)
        return self._follow_up(self, arguments)

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
