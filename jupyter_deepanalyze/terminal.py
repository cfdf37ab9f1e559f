"""The command line's terminal: progress lines on stderr and a two-stage Ctrl-C.

Owns ``Progress`` (one line per finished step: elapsed time, step, tag, a preview) and
``CtrlC`` (while active, the first Ctrl-C asks for a clean stop, a second quits at once),
shared by ``jupyter deepanalyze report``, ``eval`` and ``bench``.

Must not decide anything about a run.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import TextIO

from .events import Event, ExecutionFinished, RunFinished, RunStarted, SegmentFinished


class CtrlC:
    """While active, the first Ctrl-C calls ``stop`` (a clean stop); a second quits at once."""

    def __init__(self, stop: Callable[[], None], message: str, stderr: TextIO) -> None:
        self.stop = stop
        self.message = message
        self.stderr = stderr
        self.count = 0

    def _pressed(self) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        print(f"\n{self.message}", file=self.stderr, flush=True)
        self.stop()

    def __enter__(self) -> CtrlC:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._pressed)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)


class Progress:
    """One line per finished step on stderr: elapsed time, step, tag, a preview."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {text}", file=self.stream, flush=True)

    def show(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.line(f"model {event.model}")
        elif isinstance(event, SegmentFinished):
            preview = " ".join(event.text.split())[:70]
            self.line(f"step {event.step:<3} {event.tag or 'note':<10} {preview}")
        elif isinstance(event, ExecutionFinished):
            count = f" [{event.execution_count}]" if event.execution_count else ""
            self.line(f"         ran: {event.status}{count}")
        elif isinstance(event, RunFinished):
            self.line(f"run {event.status}" + (f": {event.error}" if event.error else ""))
