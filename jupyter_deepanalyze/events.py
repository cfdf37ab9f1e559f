"""The event stream: the only contract between the agent and its sinks.

Owns the event dataclasses of ARCHITECTURE.md ("Events"), their JSON form and the
``seq`` numbering of a run.

Must not know about sinks (notebooks, the browser, the magic's display).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

CellRole = Literal["title", "analyze", "understand", "note", "code", "report", "status"]
ExecutionStatus = Literal["ok", "error", "timeout", "interrupted", "skipped", "dead", "unresponsive"]
"""``dead``: the kernel died or restarted under the execution (its variables are gone).
``unresponsive``: the code ignored the interrupt (it catches ``KeyboardInterrupt``) and the
kernel is still busy with it; restarting the kernel frees it."""
RunStatus = Literal["completed", "cancelled", "failed", "max_rounds"]
"""The final statuses of ``run_finished``."""
ArtifactStatus = Literal["created", "modified"]

CELL_ROLES: tuple[str, ...] = get_args(CellRole)
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
MIME_TYPE = "application/vnd.deepanalyze.run+json"

_CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(kw_only=True)
class Event:
    """Fields every event has. ``seq`` is assigned by :class:`EventSequence`."""

    type: ClassVar[str] = ""
    run_id: str
    seq: int = -1

    def to_json(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        return {"seq": body.pop("seq"), "type": self.type, "run_id": body.pop("run_id"), **body}


@dataclass(kw_only=True)
class RunStarted(Event):
    type: ClassVar[str] = "run_started"
    question: str
    model: str
    kernel_id: str | None = None
    parent_run_id: str | None = None
    """Set for a follow-up: the finished run whose conversation this run continues."""


@dataclass(kw_only=True)
class Delta(Event):
    """Streaming text of the step in progress (chat views only, never cells)."""

    type: ClassVar[str] = "delta"
    step: int
    text: str
    tag: str | None = None


@dataclass(kw_only=True)
class SegmentFinished(Event):
    type: ClassVar[str] = "segment"
    step: int
    tag: str | None
    text: str


@dataclass(kw_only=True)
class CellCreated(Event):
    """Create exactly this cell: the only event that creates cells."""

    type: ClassVar[str] = "cell"
    cell_id: str
    cell_type: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ApprovalRequired(Event):
    type: ClassVar[str] = "approval_required"
    cell_id: str
    code: str


@dataclass(kw_only=True)
class OutputAppended(Event):
    """Append ``output`` to the cell, or, with ``update``, replace every output of the run
    that carries ``display_id`` (``update_display_data``)."""

    type: ClassVar[str] = "output"
    cell_id: str
    output: dict[str, Any]
    display_id: str | None = None
    update: bool = False


@dataclass(kw_only=True)
class ClearOutput(Event):
    """The code called ``clear_output``: clear the cell's outputs now, or, with ``wait``,
    just before its next output arrives."""

    type: ClassVar[str] = "clear_output"
    cell_id: str
    wait: bool = False


@dataclass(kw_only=True)
class ExecutionFinished(Event):
    """``code`` is set when what ran differs from the cell's source (edited on approval)."""

    type: ClassVar[str] = "execution_finished"
    cell_id: str
    status: ExecutionStatus
    execution_count: int | None = None
    feedback: str = ""
    code: str | None = None


@dataclass(kw_only=True)
class Artifacts(Event):
    """Files the last execution created or modified in the run's working folder.

    ``files`` holds ``{"path", "size", "status"}`` dicts: ``path`` relative to the
    working folder, ``size`` in bytes, ``status`` an :data:`ArtifactStatus`.
    """

    type: ClassVar[str] = "artifacts"
    step: int
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass(kw_only=True)
class RunFinished(Event):
    type: ClassVar[str] = "run_finished"
    status: RunStatus
    report_cell_id: str | None = None
    error: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        RunStarted,
        Delta,
        SegmentFinished,
        CellCreated,
        ApprovalRequired,
        OutputAppended,
        ClearOutput,
        ExecutionFinished,
        Artifacts,
        RunFinished,
    )
}


def from_json(data: dict[str, Any]) -> Event:
    """Inverse of :meth:`Event.to_json`; unknown fields are ignored (forward compatible)."""
    try:
        cls = EVENT_TYPES[data["type"]]
    except KeyError:
        raise ValueError(f"unknown event type {data.get('type')!r}") from None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def new_run_id() -> str:
    return uuid.uuid4().hex


def cell_id_for(run_id: str, step: int) -> str:
    """Deterministic nbformat cell id of a run's step: replaying gives the same cells."""
    cell_id = f"da-{run_id[:16]}-{step}"
    assert _CELL_ID.match(cell_id), cell_id
    return cell_id


def cell_metadata(run_id: str, step: int, role: CellRole) -> dict[str, Any]:
    assert role in CELL_ROLES, role
    return {"deepanalyze": {"run_id": run_id, "step": step, "role": role}}


class EventSequence:
    """Numbers the events of one run 0, 1, 2, …"""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._next = 0

    def make(self, cls: type[Event], **fields: Any) -> Event:
        event = cls(run_id=self.run_id, seq=self._next, **fields)
        self._next += 1
        return event
