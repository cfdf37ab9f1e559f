"""Run folders: the working directory a run's code sees.

Owns staging input paths by name into a fresh folder (copies, so model code can never
modify the originals), the list of files such a copy holds (``input_files``: what is
shipped to a kernel on another machine), and listing the data files the first message
describes (with a delimited text table's header, read from its first line).
"""

from __future__ import annotations

import csv
import fnmatch
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .protocol import DataFile

MAX_LISTED_FILES = 200
"""Files described to the model at most (a huge folder would flood the first message)."""
NOT_COPIED = (".*", "__pycache__")
"""Names skipped inside an input folder (hidden files, bytecode caches)."""
HEADER_BYTES = 64 * 1024
"""Most bytes read to find a table's header line."""
_DELIMITERS = {".csv": ",", ".tsv": "\t"}


class WorkspaceError(ValueError):
    """An input path is missing or two inputs share a name."""


def _named_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """Each input with the name its copy gets; missing inputs and name clashes refused."""
    named: list[tuple[Path, str]] = []
    for raw in paths:
        source = Path(raw).expanduser()
        if not source.exists():
            raise WorkspaceError(f"no such file or folder: {raw}")
        name = source.resolve().name
        if any(name == taken for _, taken in named):
            raise WorkspaceError(f"two inputs are both named {name!r}")
        named.append((source, name))
    return named


def stage_inputs(paths: Iterable[str | os.PathLike[str]], folder: Path) -> list[str]:
    """Copy each file or folder into ``folder`` under its own name; returns those names.

    Copies, not links: code that writes to a data file changes the run's copy only.
    """
    folder.mkdir(parents=True, exist_ok=True)
    named = _named_inputs(paths)
    for source, name in named:
        target = folder / name
        if source.is_dir():
            shutil.copytree(
                source,
                target,
                ignore=shutil.ignore_patterns(*NOT_COPIED),
                copy_function=shutil.copyfile,
            )
            _make_writable(target)
        else:
            shutil.copyfile(source, target)
    return [name for _, name in named]


@dataclass(frozen=True)
class InputFile:
    """One file a staged copy of the inputs holds: ``name`` relative to the folder (``/``)."""

    source: Path
    name: str
    size: int


def input_files(paths: Iterable[str | os.PathLike[str]]) -> list[InputFile]:
    """The files ``stage_inputs(paths, folder)`` would put in ``folder``, without copying."""
    found: list[InputFile] = []
    for source, name in _named_inputs(paths):
        if not source.is_dir():
            found.append(InputFile(source, name, source.stat().st_size))
            continue
        for directory, subdirs, files in os.walk(source):
            subdirs[:] = sorted(d for d in subdirs if not _skipped(d))
            for file in sorted(f for f in files if not _skipped(f)):
                path = Path(directory) / file
                relative = path.relative_to(source).as_posix()
                found.append(InputFile(path, f"{name}/{relative}", path.stat().st_size))
    return found


def _skipped(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in NOT_COPIED)


def _make_writable(folder: Path) -> None:
    """Copies are the run's own: read-only originals must not make them read-only."""
    for directory, _, _ in os.walk(folder):
        mode = os.stat(directory).st_mode
        os.chmod(directory, mode | 0o700)


@dataclass(frozen=True)
class DataListing:
    """The data files a first message describes (at most ``MAX_LISTED_FILES``, sorted by
    name) and how many more there were."""

    files: list[DataFile]
    more: int = 0


def data_listing(folder: Path, names: Sequence[str] | None = None) -> DataListing:
    """Data files under ``folder`` (or under the given top-level ``names``), sorted by name.

    Names are relative to ``folder`` with ``/`` separators, so code running there opens
    them as written. As the reference lists its workspace, every file given is listed,
    hidden or not; inside folders (which the reference's flat workspace never has) and
    when listing the whole ``folder``, hidden files and folders are skipped. Only the
    files described are measured and have their header read.
    """
    roots = [folder / n for n in names] if names is not None else sorted(folder.iterdir())
    found: list[tuple[str, Path]] = []
    for root in roots:
        if names is None and root.name.startswith("."):
            continue
        candidates = sorted(root.rglob("*")) if root.is_dir() else [root]
        found.extend((path.relative_to(folder).as_posix(), path) for path in candidates if path.is_file())
    shown = [(name, path) for name, path in found if not any(p.startswith(".") for p in name.split("/")[1:])]
    shown.sort()
    described = [DataFile(name, path.stat().st_size, read_columns(path)) for name, path in shown[:MAX_LISTED_FILES]]
    return DataListing(described, max(0, len(shown) - MAX_LISTED_FILES))


def list_data_files(folder: Path, names: Sequence[str] | None = None) -> list[DataFile]:
    """The files ``data_listing`` describes (at most ``MAX_LISTED_FILES``)."""
    return data_listing(folder, names).files


def describe_files(files: Iterable[DataFile]) -> list[DataFile]:
    """The data files the first message lists, sorted by name, capped.

    A name's first part is what was given (listed even when hidden, as the reference lists
    its workspace); hidden files and folders below it are left out.
    """
    shown = [f for f in files if not any(part.startswith(".") for part in f.name.split("/")[1:])]
    shown.sort(key=lambda f: f.name)
    return shown[:MAX_LISTED_FILES]


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
