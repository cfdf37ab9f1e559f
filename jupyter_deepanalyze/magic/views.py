"""The magic's two views of a run as it goes on, driven from the shell's thread only.

Owns ``LiveDisplay`` (one output of the magic's cell, redrawn in place through a display
handle, for kernel frontends; ipykernel ties displays to the cell the shell's thread is
running) and ``TextProgress`` (each step printed once it is complete, for terminal IPython).

Must not execute anything or create cells.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ..events import CellCreated, Delta, Event, ExecutionFinished, RunFinished
from .render import BADGES, RunDocument, code_output_text, run_bundle, status_line

REFRESH_SECONDS = 0.25
"""A live display is redrawn at most this often when steps or outputs arrive."""
STREAMING_REFRESH_SECONDS = 1.0
"""…and at most this often when only the text being streamed changed: each redraw
resends the whole run (figures included), so streamed tokens are coalesced harder."""


class LiveDisplay:
    """One output of the magic's cell, redrawn in place as events arrive."""

    def __init__(self) -> None:
        self.document = RunDocument()
        self._handle: Any = None
        self._changed = False  # steps, outputs or statuses
        self._streamed = False  # only the text being streamed
        self._last_draw = 0.0

    @property
    def shown(self) -> bool:
        return self._handle is not None

    def show(self, event: Event) -> None:
        self.document.apply(event)
        if isinstance(event, Delta):
            self._streamed = True
        else:
            self._changed = True

    def stopping(self) -> None:
        self.document.stopping = True
        self._changed = True
        self.flush(force=True)

    def flush(self, *, force: bool = False) -> None:
        if not (self._changed or self._streamed):
            return
        interval = REFRESH_SECONDS if self._changed else STREAMING_REFRESH_SECONDS
        if not force and time.monotonic() - self._last_draw < interval:
            return
        from IPython.display import display

        bundle = run_bundle(self.document)
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        self._changed = self._streamed = False
        self._last_draw = time.monotonic()

    def close(self) -> None:
        self.flush(force=True)


class TextProgress:
    """Terminal IPython: every step printed once, when it is complete."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.document = RunDocument()
        self._stream = stream
        self._printed_any = False

    @property
    def shown(self) -> bool:
        return self._printed_any

    def _print(self, text: str) -> None:
        stream = self._stream or sys.stdout
        print(text + "\n", file=stream, flush=True)
        self._printed_any = True

    def show(self, event: Event) -> None:
        self.document.apply(event)
        if isinstance(event, CellCreated):
            cells = {cell.id: cell for cell in self.document.cells}
            cell = cells.get(event.cell_id)
            if cell is None:
                return
            if cell.cell_type == "code":
                self._print(f"```python\n{cell.source}\n```")
            else:
                self._print(cell.source.strip())
        elif isinstance(event, ExecutionFinished):
            cell = next((c for c in self.document.cells if c.id == event.cell_id), None)
            if cell is None:
                return
            output = code_output_text(self.document, cell).rstrip("\n")
            lines = ["    " + line for line in output.split("\n")] if output else []
            if event.status in BADGES:
                lines.append(f"[{BADGES[event.status]}]")
            if lines:
                self._print("\n".join(lines))
        elif isinstance(event, RunFinished) and status_line(self.document):
            self._print(status_line(self.document))

    def stopping(self) -> None:
        self.document.stopping = True
        self._print("Stopping…")

    def flush(self, *, force: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


__all__ = ["LiveDisplay", "TextProgress"]
