"""Files a run request names: paths under the server root, named as the kernel sees them.

Owns the confinement rule — a path that resolves outside the server root (through ``..``
or a symlink) is refused, and inside a requested folder every entry is resolved too: a
link that leads outside the root (or to a hidden file) is skipped and the server log says
so — and turning API paths (server-root relative, as the contents API writes them) into
``DataFile`` names relative to the kernel's working directory, so the model opens each
file by the name it is given. A listing is bounded (``MAX_LISTED_FILES`` described, the
rest counted). Blocking file-system work: the handlers run it off the event loop.

Must not read file contents.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..protocol import DataFile
from ..workspace import MAX_LISTED_FILES, DataListing

log = logging.getLogger(__name__)


class InputError(ValueError):
    """A requested file is outside the server root, hidden, or missing (one line)."""


def resolve_under_root(root_dir: str | Path, api_path: str, *, allow_hidden: bool = False) -> Path:
    """The real path of ``api_path`` if it exists under the root; else ``InputError``."""
    root = Path(root_dir).resolve()
    relative = api_path.strip().lstrip("/")
    try:
        target = (root / relative).resolve()
    except (OSError, ValueError) as exc:
        raise InputError(f"Invalid path {api_path!r}: {exc}") from None
    if not target.is_relative_to(root):
        raise InputError(f"{api_path!r} is outside the server root.")
    parts = target.relative_to(root).parts
    if not allow_hidden and any(part.startswith(".") for part in parts):
        raise InputError(f"{api_path!r} is a hidden file or folder.")
    if not target.exists():
        raise InputError(f"No such file or folder under the server root: {api_path!r}.")
    return target


def _inside(root: Path, path: Path, allow_hidden: bool) -> Path | None:
    """The real path of ``path`` if it stays inside ``root`` (and is not hidden there)."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    if not real.is_relative_to(root):
        return None
    if not allow_hidden and any(part.startswith(".") for part in real.relative_to(root).parts):
        return None
    return real


def _folder_files(root: Path, folder: Path, allow_hidden: bool, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(name relative to ``folder``, real path) of each regular file inside ``folder``,
    hidden entries and links leading out of the root skipped (and logged). Links to
    folders are not followed; the walk never leaves ``folder``. One ``scandir`` per
    folder and no further system call per plain file: a 100 000-file folder is cheap."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        log.warning("DeepAnalyze: cannot list %s: %s", folder, exc)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        name = prefix + entry.name
        if entry.is_symlink():
            real = _inside(root, Path(entry.path), allow_hidden)
            if real is None:
                log.warning("DeepAnalyze: not listing %s: it links outside the server root", entry.path)
            elif real.is_file():
                yield name, str(real)
        elif entry.is_dir(follow_symlinks=False):
            yield from _folder_files(root, Path(entry.path), allow_hidden, name + "/")
        elif entry.is_file(follow_symlinks=False):
            yield name, entry.path


def data_files(
    root_dir: str | Path,
    kernel_cwd: str | Path,
    api_paths: Sequence[str],
    *,
    allow_hidden: bool = False,
) -> DataListing:
    """``DataFile`` entries for the requested files and folders, named from ``kernel_cwd``.

    A folder stands for the data files inside it. Names use ``/`` and may start with
    ``../`` when a file sits beside the notebook's folder rather than inside it. At most
    ``MAX_LISTED_FILES`` are described (sorted by name); the listing counts the rest.
    """
    root = Path(root_dir).resolve()
    cwd = Path(kernel_cwd).resolve()
    found: dict[str, str] = {}
    for api_path in api_paths:
        target = resolve_under_root(root_dir, api_path, allow_hidden=allow_hidden)
        name = Path(os.path.relpath(target, cwd)).as_posix()
        if target.is_dir():
            for inner, real in _folder_files(root, target, allow_hidden):
                found[inner if name == "." else f"{name}/{inner}"] = real
        else:
            found[name] = str(target)
    names = sorted(found)
    described = [DataFile(name, os.stat(found[name]).st_size) for name in names[:MAX_LISTED_FILES]]
    return DataListing(described, len(names) - len(described))
