"""The run list (``GET /deepanalyze/runs``), read from the run logs on disk.

Owns listing runs newest first — by the time their log was last written, so a finished
run keeps its place — with ``limit``/``before`` pagination, and each run's summary
(``run_id``, ``kernel_id``, ``status``, ``question`` shortened, ``parent_run_id``) read
from its log's first line (``run_started``) and last line (``run_finished``, when it
has one) without reading the rest. The list is complete after a server restart, and
a log that cannot be read (a torn or undecodable line) is skipped or read as far as it
can be, never an error. Blocking file I/O: callers run it off the event loop.

Must not interpret events beyond a summary, and must not write.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..events import RUN_STATUSES
from .eventlog import log_path

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
SUMMARY_QUESTION_CHARS = 500
"""A summary shows this much of the question (the run's own events hold all of it)."""
_FIRST_LINE_BYTES = 8 * 1024 * 1024  # a run_started line: a question within the request limit
_TAIL_BYTES = 64 * 1024  # enough for a run_finished line
_UNFINISHED_STATUS = "failed"
"""A log without an end record whose run is not active: the server stopped during it."""


class UnknownCursor(LookupError):
    """``before`` names no run in the log folder."""


def summary(run_id: str, started: Mapping[str, Any], status: str) -> dict[str, Any]:
    """The run list's entry for a run: its ``run_started`` event's fields and a status."""
    question = started.get("question")
    if isinstance(question, str) and len(question) > SUMMARY_QUESTION_CHARS:
        question = question[:SUMMARY_QUESTION_CHARS] + "…"
    return {
        "run_id": run_id,
        "kernel_id": started.get("kernel_id"),
        "status": status,
        "question": question if isinstance(question, str) else None,
        "parent_run_id": started.get("parent_run_id"),
    }


@dataclass(frozen=True)
class _Log:
    run_id: str
    path: Path
    order: tuple[int, str]  # (mtime_ns, run id): newest first is descending


def _json_line(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _first_event(path: Path) -> dict[str, Any] | None:
    with path.open("rb") as handle:
        return _json_line(handle.readline(_FIRST_LINE_BYTES))


def _last_event(path: Path) -> dict[str, Any] | None:
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - _TAIL_BYTES))
        lines = [line for line in handle.read().split(b"\n") if line.strip()]
    return _json_line(lines[-1]) if lines else None


def _logs(folder: Path) -> list[_Log]:
    found: list[_Log] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        run_id, dot, suffix = entry.name.rpartition(".")
        if suffix != "jsonl" or not dot:
            continue
        try:
            path = log_path(folder, run_id)
            stat = entry.stat()
        except (ValueError, OSError):
            continue
        found.append(_Log(run_id, path, (stat.st_mtime_ns, run_id)))
    found.sort(key=lambda item: item.order, reverse=True)
    return found


def list_logged_runs(
    folder: Path,
    *,
    kernel_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    before: str | None = None,
    live: Mapping[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Summaries of the runs logged in ``folder``, newest first: at most ``limit``, only
    those older than run ``before`` when given, only ``kernel_id``'s when given.
    ``live`` holds the summaries of active runs (their status is not on disk yet)."""
    live = live or {}
    logs = _logs(folder)
    if before is not None:
        cursor = next((item for item in logs if item.run_id == before), None)
        if cursor is None:
            raise UnknownCursor(f"No run {before!r} to list runs before.")
        logs = [item for item in logs if item.order < cursor.order]
    runs: list[dict[str, Any]] = []
    for item in logs:
        if len(runs) >= limit:
            break
        if item.run_id in live:
            entry = live[item.run_id]
        else:
            try:
                started, last = _first_event(item.path), _last_event(item.path)
            except OSError as exc:
                log.warning("DeepAnalyze: cannot read the run log %s: %s", item.path, exc)
                continue
            if started is None or started.get("type") != "run_started":
                continue  # not a run's log, or its first line is torn
            finished = last is not None and last.get("type") == "run_finished"
            status = last.get("status") if finished and last is not None else _UNFINISHED_STATUS
            entry = summary(item.run_id, started, status if status in RUN_STATUSES else _UNFINISHED_STATUS)
        if kernel_id is None or entry["kernel_id"] == kernel_id:
            runs.append(entry)
    return runs


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "UnknownCursor", "list_logged_runs", "summary"]
