"""The files a run wrote in its working folder (the ``artifacts`` event), and the report's list of them.

Owns ``Artifact`` (one file: its path relative to the run's working folder, its size, and
whether the execution created or modified it), ``RunFiles`` (every file of a run, as
its executions reported them) and ``files_section`` (the "Files" list the report cell
ends with: relative links that work in JupyterLab and in an exported HTML file).

Must not look at any disk: executors find the files (``execution.snapshots``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .events import ArtifactStatus

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Artifact:
    """A file an execution created or modified in the run's working folder."""

    path: str
    """Relative to the working folder, ``/``-separated."""
    size: int
    status: ArtifactStatus

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "status": self.status}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        return cls(str(data["path"]), int(data["size"]), data["status"])


class RunFiles:
    """Every file a run wrote, in the order first reported; a file the run created and
    then changed stays ``created``, with its latest size."""

    def __init__(self) -> None:
        self._files: dict[str, Artifact] = {}

    def add(self, artifacts: Iterable[Artifact]) -> None:
        for artifact in artifacts:
            known = self._files.get(artifact.path)
            status = known.status if known is not None else artifact.status
            self._files[artifact.path] = Artifact(artifact.path, artifact.size, status)

    @property
    def files(self) -> list[Artifact]:
        return list(self._files.values())

    def __bool__(self) -> bool:
        return bool(self._files)


def format_bytes(size: int) -> str:
    """``512 B``, ``12.3 KB``, ``4.0 MB`` (powers of 1024)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def file_link(path: str, base: str = "") -> str:
    """The relative URL of ``path`` (working-folder relative) from where the report is:
    ``base`` is the working folder's path from there (``""`` or ``"OUT_files/"``)."""
    if base and not base.endswith("/"):
        base += "/"
    return quote(base + path, safe="/")


def files_section(files: Iterable[Artifact], base: str = "") -> str:
    """The report's closing "Files" list (Markdown), or ``""`` when the run wrote none."""
    lines = []
    for artifact in files:
        label = _CONTROL.sub("?", artifact.path)  # a name is one line of the list, whatever it holds
        label = label.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
        details = f"{format_bytes(artifact.size)}, {artifact.status}"
        lines.append(f"- [{label}]({file_link(artifact.path, base)}) ({details})")
    if not lines:
        return ""
    return "**Files**\n\n" + "\n".join(lines)
