"""A run's event log on disk: one JSON event per line, appended as the run goes.

Owns the log folder's layout and permissions (owner-only), appending events and reading
a log back (a torn last line from a crash, or a line that is not UTF-8 JSON, is
skipped), and beside each log the run's conversation (the messages the model was sent,
written when the run ends, read back to continue it after the run has left memory).
Neither ever holds secrets (the agent redacts them).

Must not interpret events beyond their JSON form.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import IO, Any

from ..conversation import Conversation

log = logging.getLogger(__name__)

RUN_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_RUN_ID = re.compile(rf"^{RUN_ID_PATTERN}$")


def log_path(folder: Path, run_id: str) -> Path:
    """Where the log of ``run_id`` lives; the id is checked so no path can be smuggled in."""
    if not _RUN_ID.match(run_id):
        raise ValueError(f"invalid run id {run_id!r}")
    return folder / f"{run_id}.jsonl"


class EventLog:
    """Appends one run's events to ``{folder}/{run_id}.jsonl``.

    A log that cannot be written (disk full, read-only folder) is reported once and then
    skipped: the run itself goes on, replayable from memory.
    """

    def __init__(self, folder: Path, run_id: str) -> None:
        self.path = log_path(folder, run_id)
        self._file: IO[str] | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            size = os.fstat(descriptor).st_size
            torn = size > 0 and os.pread(descriptor, 1, size - 1) != b"\n"
            self._file = os.fdopen(descriptor, "a", encoding="utf-8")
            if torn:  # a crash cut the last line: end it, so the next event is readable
                self._file.write("\n")
        except OSError as exc:
            log.warning("DeepAnalyze: cannot write the run log %s: %s", self.path, exc)

    def append(self, event: dict[str, Any]) -> None:
        if self._file is None:
            return
        try:
            line = json.dumps(event, ensure_ascii=False)
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate got this far: keep the event, escaped
                line = json.dumps(event)
            self._file.write(line + "\n")
            self._file.flush()
        except (OSError, ValueError) as exc:
            log.warning("DeepAnalyze: stopped writing the run log %s: %s", self.path, exc)
            self.close()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of a log, in order. Bytes that are not UTF-8 read as U+FFFD; a line that
    is not a JSON event (torn by a crash mid-write) is skipped, and so is every event out
    of ``seq`` order after it."""
    events: list[dict[str, Any]] = []
    skipped = 0
    with path.open("rb") as handle:
        for line in handle:
            try:
                event = json.loads(line.decode("utf-8", errors="replace"))
            except ValueError:
                skipped += 1
                continue
            if isinstance(event, dict) and event.get("seq") == len(events):
                events.append(event)
    if skipped:
        log.info("DeepAnalyze: skipped %d unreadable line(s) of the run log %s", skipped, path)
    return events


def conversation_path(folder: Path, run_id: str) -> Path:
    return log_path(folder, run_id).with_suffix(".messages.json")


def write_conversation(folder: Path, conversation: Conversation) -> None:
    """Keep a finished run's messages (owner-only), for a follow-up to continue them."""
    path = conversation_path(folder, conversation.run_id)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"run_id": conversation.run_id, "messages": list(conversation.messages)}, handle)
    except (OSError, ValueError) as exc:
        log.warning("DeepAnalyze: cannot keep the conversation of run %s: %s", conversation.run_id, exc)


def read_conversation(folder: Path, run_id: str) -> Conversation | None:
    """The messages ``write_conversation`` kept, or None (none kept, or unreadable)."""
    try:
        with conversation_path(folder, run_id).open(encoding="utf-8") as handle:
            data = json.load(handle)
        return Conversation.of(run_id, data["messages"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
