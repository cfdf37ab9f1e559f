"""Run folders: the working directory a run's code sees.

Owns staging input paths by name into a fresh folder (copies, so model code can never
modify the originals) and listing the data files the first message describes (with a
delimited text table's header, read from its first line).
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from .protocol import DataFile

MAX_LISTED_FILES = 200
"""Files described to the model at most (a huge folder would flood the first message)."""
HEADER_BYTES = 64 * 1024
"""Most bytes read to find a table's header line."""
_DELIMITERS = {".csv": ",", ".tsv": "\t"}


class WorkspaceError(ValueError):
    """An input path is missing or two inputs share a name."""


def stage_inputs(paths: Iterable[str | os.PathLike[str]], folder: Path) -> list[str]:
    """Copy each file or folder into ``folder`` under its own name; returns those names.

    Copies, not links: code that writes to a data file changes the run's copy only.
    """
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for raw in paths:
        source = Path(raw).expanduser()
        if not source.exists():
            raise WorkspaceError(f"no such file or folder: {raw}")
        name = source.resolve().name
        if name in names:
            raise WorkspaceError(f"two inputs are both named {name!r}")
        target = folder / name
        if source.is_dir():
            shutil.copytree(
                source,
                target,
                ignore=shutil.ignore_patterns(".*", "__pycache__"),
                copy_function=shutil.copyfile,
            )
            _make_writable(target)
        else:
            shutil.copyfile(source, target)
        names.append(name)
    return names


def _make_writable(folder: Path) -> None:
    """Copies are the run's own: read-only originals must not make them read-only."""
    for directory, _, _ in os.walk(folder):
        mode = os.stat(directory).st_mode
        os.chmod(directory, mode | 0o700)


def list_data_files(folder: Path, names: Sequence[str] | None = None) -> list[DataFile]:
    """Data files under ``folder`` (or under the given top-level ``names``), sorted by name.

    Names are relative to ``folder`` with ``/`` separators, so code running there opens
    them as written. Hidden files are skipped.
    """
    roots = [folder / n for n in names] if names is not None else sorted(folder.iterdir())
    found: list[DataFile] = []
    for root in roots:
        candidates = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in candidates:
            relative = path.relative_to(folder)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                found.append(DataFile(relative.as_posix(), path.stat().st_size, read_columns(path)))
    found.sort(key=lambda f: f.name)
    return found[:MAX_LISTED_FILES]


def read_columns(path: Path) -> tuple[str, ...]:
    """The header of a CSV or TSV file (its first line), or ``()`` when there is none."""
    delimiter = _DELIMITERS.get(path.suffix.lower())
    if delimiter is None:
        return ()
    try:
        with path.open("rb") as stream:
            head = stream.read(HEADER_BYTES)
    except OSError:
        return ()
    line = head.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    if not line.strip():
        return ()
    return tuple(name.strip() for name in next(csv.reader([line], delimiter=delimiter)))
