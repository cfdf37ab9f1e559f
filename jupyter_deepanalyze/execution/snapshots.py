"""Which files an execution wrote: snapshots of the working folder, taken where the code runs.

Owns the snapshot (paths, sizes and modification times of the files under a folder —
the kernel's working directory unless named — with hidden files and folders, bytecode
caches and notebooks left out, bounded in files, folders and depth), the one function
that takes it (``SNAPSHOT_CODE``: run by the kernel itself in a silent execution, so it
works for a kernel on another machine, or in this process for the magic's in-process
executor), and the diff of two snapshots into ``artifacts.Artifact`` items.

A snapshot that hit a bound is partial: a file missing from the earlier one then counts
as created only if it was written after that snapshot was taken (by the kernel's clock).

Must not read this machine's disk on a kernel's behalf, nor leave names in the kernel's
namespace.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from ..artifacts import Artifact

MAX_FILES = 1000
"""Files a snapshot lists at most."""
MAX_FOLDERS = 200
"""Folders a snapshot walks at most."""
MAX_DEPTH = 3
"""Folder levels below the working folder a snapshot looks into."""
MAX_LISTED = 100
"""Files one ``artifacts`` event names at most (the first by path)."""
SKIPPED = (".*", "__pycache__", "*.pyc", "*.ipynb", "node_modules")
"""Names left out: hidden files and folders, bytecode caches, notebooks (the user's own,
saved while a block runs), JavaScript dependencies."""
SNAPSHOT_TIMEOUT = 30.0
"""Seconds a kernel may take to list its folder."""

SNAPSHOT_CODE = '''
import fnmatch, json, os, stat, time

def snapshot(folder, skipped, max_files, max_folders, max_depth):
    folder = os.path.abspath(folder or os.getcwd())
    taken = time.time_ns()
    keep = lambda name: not any(fnmatch.fnmatch(name, pattern) for pattern in skipped)
    files, complete, walked = {}, True, 0
    for directory, subdirs, names in os.walk(folder):
        walked += 1
        depth = 0 if directory == folder else os.path.relpath(directory, folder).count(os.sep) + 1
        kept = sorted(d for d in subdirs if keep(d))
        if depth >= max_depth and kept:
            complete, kept = False, []
        subdirs[:] = kept
        for name in sorted(n for n in names if keep(n)):
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if len(files) >= max_files:
                return json.dumps([folder, taken, files, False])
            files[os.path.relpath(path, folder).replace(os.sep, "/")] = [info.st_size, info.st_mtime_ns]
        if walked >= max_folders and subdirs:
            complete = False
            break
    return json.dumps([folder, taken, files, complete])
'''

_HERE: dict[str, Any] = {"__name__": "_deepanalyze_snapshots"}
exec(SNAPSHOT_CODE, _HERE)  # the same function, for code that runs in this process


class SnapshotError(RuntimeError):
    """The kernel could not list its folder (not a Python kernel, a broken folder, …)."""


@dataclass(frozen=True)
class FolderSnapshot:
    """The files under ``folder`` (path → (size, mtime in ns)) at ``taken`` (ns, the
    kernel's clock); ``complete`` is False when a bound cut the listing short."""

    folder: str
    taken: int
    files: dict[str, tuple[int, int]]
    complete: bool

    @classmethod
    def from_json(cls, text: str) -> FolderSnapshot:
        folder, taken, files, complete = json.loads(text)
        return cls(str(folder), int(taken), {str(k): (int(v[0]), int(v[1])) for k, v in files.items()}, bool(complete))


def snapshot_arguments(folder: str | None) -> tuple[Any, ...]:
    return (folder, list(SKIPPED), MAX_FILES, MAX_FOLDERS, MAX_DEPTH)


def snapshot_here(folder: str | None = None) -> FolderSnapshot:
    """A snapshot taken in this process (the magic's kernel is this process)."""
    return FolderSnapshot.from_json(_HERE["snapshot"](*snapshot_arguments(folder)))


def snapshot_expression(folder: str | None) -> str:
    """A ``user_expressions`` entry that takes the snapshot in the kernel, in a scope of its
    own (nothing reaches the user's namespace); its value is the snapshot's JSON."""
    return (
        f"(lambda scope: (exec({SNAPSHOT_CODE!r}, scope), scope['snapshot'](*{snapshot_arguments(folder)!r}))[1])"
        "({'__name__': '_deepanalyze_snapshots'})"
    )


def snapshot_from_reply(reply: dict[str, Any]) -> FolderSnapshot:
    """The snapshot in a silent execution's reply to :func:`snapshot_expression`."""
    answer = (reply.get("user_expressions") or {}).get("snapshot") or {}
    if answer.get("status") != "ok":
        raise SnapshotError(
            f"{answer.get('ename', reply.get('ename', 'Error'))}: {answer.get('evalue', reply.get('evalue', ''))}"
        )
    try:
        return FolderSnapshot.from_json(ast.literal_eval(answer["data"]["text/plain"]))
    except (KeyError, ValueError, SyntaxError, TypeError) as exc:
        raise SnapshotError(f"unreadable listing: {exc}") from None


def changed_files(before: FolderSnapshot, after: FolderSnapshot, limit: int = MAX_LISTED) -> list[Artifact]:
    """Files created or modified between two snapshots of the same folder, by path, at most ``limit``."""
    if before.folder != after.folder:
        return []
    changed: list[Artifact] = []
    for path in sorted(after.files):
        size, mtime = after.files[path]
        earlier = before.files.get(path)
        if earlier is None:
            if before.complete or mtime >= before.taken:
                changed.append(Artifact(path, size, "created"))
        elif earlier != (size, mtime):
            changed.append(Artifact(path, size, "modified"))
        if len(changed) >= limit:
            break
    return changed
