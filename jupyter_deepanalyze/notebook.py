"""Events → an nbformat v4 notebook (the headless sink).

Owns ``NotebookBuilder`` (cells only from ``cell`` events, addressed by id, so applying
the same events twice gives the same notebook; each code cell's outputs follow
``outputs.OutputAccumulator``: streams merged, ``clear_output`` and display updates
honoured; a run replayed onto a notebook that already holds its cells adopts them and
rebuilds their outputs, as the frontend's materializer does; a cell of someone else
with the same id is never touched), report images attached so the file is
self-contained, the kernelspec of the kernel a run used, and writing ``.ipynb`` files
(the other formats are ``exports``).

Must not execute anything.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from .events import (
    CellCreated,
    ClearOutput,
    Event,
    ExecutionFinished,
    OutputAppended,
    RunFinished,
    RunStarted,
    from_json,
)
from .outputs import OutputAccumulator

NOTEBOOK_METADATA: dict[str, Any] = {
    "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
    "language_info": {"name": "python"},
}

_IMAGE_LINK = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_IMG_TAG = re.compile(r"(<img\b[^>]*?\bsrc=[\"'])([^\"']+)([\"'])", re.IGNORECASE)
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/svg+xml", "image/webp"})
MAX_ATTACHMENT_BYTES = 20_000_000


class NotebookBuilder:
    """Materializes a run's events into a notebook, idempotently (by run and ``seq``)."""

    def __init__(self, notebook: NotebookNode | None = None) -> None:
        self.notebook = notebook if notebook is not None else new_notebook(metadata=dict(NOTEBOOK_METADATA))
        self._cells: dict[str, NotebookNode] = {
            cell["id"]: cell for cell in self.notebook.cells if "id" in cell
        }
        self._own: set[str] = set()  # ids of cells the runs applied here created or adopted
        self._applied: dict[str, int] = {}  # run_id -> highest seq applied
        self._outputs: dict[str, OutputAccumulator] = {}  # code cell id -> its outputs
        self._run_cells: dict[str, list[str]] = {}  # run_id -> its code cells' ids

    def apply(self, event: Event | Mapping[str, Any]) -> None:
        """Apply one event; an event already applied (same run, seq not newer) is ignored."""
        if not isinstance(event, Event):
            event = from_json(dict(event))
        if event.seq >= 0:
            if event.seq <= self._applied.get(event.run_id, -1):
                return  # replayed after a reconnect: outputs must not be appended twice
            self._applied[event.run_id] = event.seq
        if isinstance(event, CellCreated):
            self._create(event)
        elif isinstance(event, OutputAppended):
            output = nbformat.from_dict(event.output)
            if event.update and event.display_id:
                for cell_id in self._run_cells.get(event.run_id, ()):
                    if (shown := self._outputs_of(cell_id)) is not None:
                        shown.update(event.display_id, output)
            elif (outputs := self._outputs_of(event.cell_id)) is not None:
                outputs.add(output, display_id=event.display_id)
        elif isinstance(event, ClearOutput):
            if (outputs := self._outputs_of(event.cell_id)) is not None:
                outputs.clear(wait=event.wait)
        elif isinstance(event, ExecutionFinished):
            cell = self._cells.get(event.cell_id) if event.cell_id in self._own else None
            if cell is not None and cell.cell_type == "code":
                cell.execution_count = event.execution_count
                if event.code is not None:
                    cell.source = event.code
        elif isinstance(event, RunStarted):
            self.notebook.metadata["deepanalyze"] = {
                "run_id": event.run_id,
                "question": event.question,
                "model": event.model,
                **({"parent_run_id": event.parent_run_id} if event.parent_run_id else {}),
            }
        elif isinstance(event, RunFinished):
            run = self.notebook.metadata.setdefault("deepanalyze", {"run_id": event.run_id})
            run["status"] = event.status
            if event.error:
                run["error"] = event.error

    def apply_all(self, events: Iterable[Event | Mapping[str, Any]]) -> NotebookNode:
        for event in events:
            self.apply(event)
        return self.notebook

    def _outputs_of(self, cell_id: str) -> OutputAccumulator | None:
        cell = self._cells.get(cell_id) if cell_id in self._own else None
        if cell is None or cell.cell_type != "code":
            return None
        if cell_id not in self._outputs:
            self._outputs[cell_id] = OutputAccumulator(cell.outputs)
        return self._outputs[cell_id]

    def _create(self, event: CellCreated) -> None:
        if event.cell_type == "code":
            cells = self._run_cells.setdefault(event.run_id, [])
            if event.cell_id not in cells:
                cells.append(event.cell_id)
        existing = self._cells.get(event.cell_id)
        if existing is not None:
            if event.cell_id in self._own:  # replayed into this builder: nothing to do
                return
            if existing.get("metadata", {}).get("deepanalyze", {}).get("run_id") != event.run_id:
                return  # somebody else's cell has this id: never touched, its events ignored
            # The run's cell, in the notebook already (materialized before): adopted. Its
            # outputs and count are rebuilt by the events that follow, as they were made
            # the first time; its source stays as the notebook has it.
            self._own.add(event.cell_id)
            if existing.cell_type == "code":
                existing.outputs = []
                existing.execution_count = None
                self._outputs.pop(event.cell_id, None)
            return
        metadata = nbformat.from_dict(event.metadata)
        if event.cell_type == "code":
            cell = new_code_cell(event.source, id=event.cell_id, metadata=metadata)
        else:
            cell = new_markdown_cell(event.source, id=event.cell_id, metadata=metadata)
        self.notebook.cells.append(cell)
        self._cells[event.cell_id] = cell
        self._own.add(event.cell_id)


def events_to_notebook(events: Iterable[Event | Mapping[str, Any]]) -> NotebookNode:
    return NotebookBuilder().apply_all(events)


def _embeddable(folder: Path, link: str) -> Path | None:
    if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE) or link.startswith("/"):
        return None  # URLs, data:, attachment: and absolute paths stay as they are
    root = folder.resolve()
    path = (root / link).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    mime = mimetypes.guess_type(path.name)[0]
    if mime not in _IMAGE_TYPES or path.stat().st_size > MAX_ATTACHMENT_BYTES:
        return None
    return path


def attach_images(notebook: NotebookNode, folder: Path) -> int:
    """Embed images that report cells link to (relative paths inside ``folder``).

    The links become ``attachment:NAME``; returns how many images were attached.
    """
    attached = 0
    for cell in notebook.cells:
        role = cell.get("metadata", {}).get("deepanalyze", {}).get("role")
        if cell.cell_type != "markdown" or role != "report":
            continue
        attachments: dict[str, Any] = dict(cell.get("attachments", {}))

        def embed(match: re.Match[str], attachments: dict[str, Any] = attachments) -> str:
            nonlocal attached
            path = _embeddable(folder, match.group(2))
            if path is None:
                return match.group(0)
            name = match.group(2).replace("/", "_")
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if name not in attachments:
                attachments[name] = {mime: base64.b64encode(path.read_bytes()).decode("ascii")}
                attached += 1
            return f"{match.group(1)}attachment:{name}{match.group(3)}"

        source = _IMG_TAG.sub(embed, _IMAGE_LINK.sub(embed, cell.source))
        if attachments:
            cell.source = source
            cell["attachments"] = nbformat.from_dict(attachments)
    return attached


def kernel_metadata(kernel_name: str) -> dict[str, Any]:
    """``kernelspec`` and ``language_info`` of the kernel named ``kernel_name`` (as this
    machine's kernel specs describe it; a kernel known only elsewhere, e.g. on a
    gateway, is named as it was asked for)."""
    if kernel_name == NOTEBOOK_METADATA["kernelspec"]["name"]:
        return {key: dict(value) for key, value in NOTEBOOK_METADATA.items()}
    spec: dict[str, Any] = {"name": kernel_name, "display_name": kernel_name}
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        found = KernelSpecManager().get_kernel_spec(kernel_name)
        spec.update(display_name=found.display_name, language=found.language)
    except (NoSuchKernel, OSError, ValueError):
        pass
    metadata: dict[str, Any] = {"kernelspec": spec}
    if spec.get("language"):
        metadata["language_info"] = {"name": spec["language"]}
    return metadata


def write_notebook(notebook: NotebookNode, path: Path) -> Path:
    """Validate and write ``path``."""
    nbformat.validate(notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path
