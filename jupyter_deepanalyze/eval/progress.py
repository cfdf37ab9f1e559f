"""The evaluation's progress bar on stderr: done/total, right and failed so far, ETA.

On a terminal the bar redraws in place; otherwise (a log file, CI) each finished task
gets one line in the CLI's ``[elapsed] ...`` style. The ETA extrapolates from the tasks
finished in this invocation (resumed ones took no time now).

Must not decide anything about the run.
"""

from __future__ import annotations

import time
from typing import TextIO

from .runner import TaskRecord

BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """Call :meth:`update` with each finished task, :meth:`close` at the end."""

    def __init__(self, label: str, total: int, stream: TextIO, *, already_done: int = 0) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self.done = already_done
        self.right = 0
        self.failed = 0
        self._resumed = already_done
        self._started = time.monotonic()
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._drawn = False

    def count_resumed(self, record: TaskRecord) -> None:
        """Add a task finished by an earlier invocation to the tallies."""
        self.right += record.correct
        self.failed += record.status == "failed"

    def start(self) -> None:
        if self._tty:
            self._draw("")
        elif self._resumed:
            self._line(f"{self._resumed} of {self.total} tasks already done (resumed)")

    def update(self, record: TaskRecord) -> None:
        self.done += 1
        self.right += record.correct
        self.failed += record.status == "failed"
        verdict = "right" if record.correct else ("FAILED" if record.status == "failed" else "wrong")
        note = f"task {record.task_id}: {verdict}"
        if record.status not in ("completed", "failed"):
            note += f" ({record.status})"
        elif record.error:
            note += f" ({record.error[:60]})"
        if self._tty:
            self._draw(note)
        else:
            self._line(f"{self._bar()}  {note}")

    def close(self) -> None:
        if self._tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    # -- rendering

    def _eta(self) -> str:
        finished_now = self.done - self._resumed
        remaining = self.total - self.done
        if remaining <= 0:
            return "ETA 0:00"
        if finished_now <= 0:
            return "ETA --:--"
        per_task = (time.monotonic() - self._started) / finished_now
        return f"ETA {format_duration(per_task * remaining)}"

    def _bar(self) -> str:
        share = self.done / self.total if self.total else 1.0
        filled = int(share * BAR_WIDTH)
        return (
            f"{self.label} {self.done}/{self.total} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] "
            f"{share:4.0%}  right {self.right}  failed {self.failed}  {self._eta()}"
        )

    def _elapsed(self) -> str:
        return f"[{time.monotonic() - self._started:6.1f}s]"

    def _draw(self, note: str) -> None:
        self.stream.write(f"\r\x1b[2K{self._elapsed()} {self._bar()}  {note}"[:300])
        self.stream.flush()
        self._drawn = True

    def _line(self, text: str) -> None:
        print(f"{self._elapsed()} {text}", file=self.stream, flush=True)
