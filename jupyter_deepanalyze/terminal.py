"""The command line's terminal: progress lines on stderr and a two-stage Ctrl-C.

Owns ``Progress`` (one line per finished step: elapsed time, step, tag, a preview) and
``CtrlC`` (while active, the first Ctrl-C — or SIGTERM — asks for a clean stop, a second
Ctrl-C quits at once, and so does a SIGTERM'd stop that takes too long), shared by
``jupyter deepanalyze report``, ``eval`` and ``bench``.

Must not decide anything about a run.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import TextIO

from .events import Event, ExecutionFinished, RunFinished, RunStarted, SegmentFinished

TERMINATE_GRACE_SECONDS = 3.0
"""After SIGTERM, how long a clean stop may take before the command quits anyway."""


class CtrlC:
    """While active, the first Ctrl-C calls ``stop`` (a clean stop); a second quits at once.

    Quitting calls ``quit`` when given (the caller writes what it has, then returns),
    else raises ``KeyboardInterrupt``. With ``quit``, SIGTERM is handled too: a clean stop,
    and quitting if it is not done within ``TERMINATE_GRACE_SECONDS`` (``terminated``
    tells the exit status).
    """

    def __init__(
        self,
        stop: Callable[[], None],
        message: str,
        stderr: TextIO,
        *,
        quit: Callable[[], None] | None = None,
    ) -> None:
        self.stop = stop
        self.message = message
        self.stderr = stderr
        self.quit = quit
        self.count = 0
        self.terminated = False
        self._timer: asyncio.TimerHandle | None = None

    def _pressed(self) -> None:
        self.count += 1
        if self.count > 1:
            if self.quit is None:
                raise KeyboardInterrupt
            print("\nQuitting now: writing what the run has so far.", file=self.stderr, flush=True)
            self.quit()
            return
        print(f"\n{self.message}", file=self.stderr, flush=True)
        self.stop()

    def _sigterm(self) -> None:
        if self.terminated:
            return
        self.terminated = True
        print("\nTerminated: stopping the run…", file=self.stderr, flush=True)
        self.stop()
        assert self.quit is not None
        self._timer = asyncio.get_running_loop().call_later(TERMINATE_GRACE_SECONDS, self.quit)

    def __enter__(self) -> CtrlC:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._pressed)
        if self.quit is not None:
            loop.add_signal_handler(signal.SIGTERM, self._sigterm)
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGINT)
        if self.quit is not None:
            loop.remove_signal_handler(signal.SIGTERM)
        if self._timer is not None:
            self._timer.cancel()


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
