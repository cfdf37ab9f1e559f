"""Files a run request names: paths under the server root, named as the kernel sees them.

Owns the confinement rule (a path that resolves outside the server root, through ``..``
or a symlink, is refused) and turning API paths (server-root relative, as the contents
API writes them) into ``DataFile`` names relative to the kernel's working directory, so
the model opens each file by the name it is given.

Must not read file contents.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..protocol import DataFile
from ..workspace import MAX_LISTED_FILES, list_data_files


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


def data_files(
    root_dir: str | Path,
    kernel_cwd: str | Path,
    api_paths: Sequence[str],
    *,
    allow_hidden: bool = False,
) -> list[DataFile]:
    """``DataFile`` entries for the requested files and folders, named from ``kernel_cwd``.

    A folder stands for the data files inside it. Names use ``/`` and may start with
    ``../`` when a file sits beside the notebook's folder rather than inside it.
    """
    cwd = Path(kernel_cwd).resolve()
    found: dict[str, DataFile] = {}
    for api_path in api_paths:
        target = resolve_under_root(root_dir, api_path, allow_hidden=allow_hidden)
        name = Path(os.path.relpath(target, cwd)).as_posix()
        if target.is_dir():
            for inner in list_data_files(target):
                entry_name = inner.name if name == "." else f"{name}/{inner.name}"
                found[entry_name] = DataFile(entry_name, inner.size_bytes)
        else:
            found[name] = DataFile(name, target.stat().st_size)
    return sorted(found.values(), key=lambda f: f.name)[:MAX_LISTED_FILES]
