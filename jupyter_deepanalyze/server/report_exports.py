"""``POST /deepanalyze/runs/{id}/export``: a finished run's report as HTML, PDF or Markdown.

Owns the export request (``{format, notebook_path}``): the conversation up to that run
(the runs it follows up first) made into a notebook from their events — the same
``NotebookBuilder`` as report notebooks — with the images its reports link to embedded,
exported by ``exports`` off the event loop and written beside the notebook as
``NAME-deepanalyze-RUN.EXT`` (Markdown's images in ``…_images/``). The notebook path
stays inside the server root; writing there needs ``write`` on ``contents`` too.

Must not block the event loop, nor write outside the notebook's folder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nbformat
from jupyter_server.auth.decorator import authorized
from nbformat import NotebookNode
from tornado import web

from ..exports import EXPORT_FORMATS, ExportError, export_notebook
from ..notebook import NotebookBuilder, attach_images
from .handlers import ApiError, DeepAnalyzeAPIHandler, _optional_str
from .inputs import InputError, resolve_under_root
from .runs import Run


def export_name(notebook: Path, run_id: str, fmt: str) -> Path:
    """``analysis.ipynb`` → ``analysis-deepanalyze-1a2b3c4d.pdf`` beside it."""
    return notebook.with_name(f"{notebook.stem}-deepanalyze-{run_id[:8]}{EXPORT_FORMATS[fmt]}")


def conversation_notebook(runs: list[Run], kernelspec: dict[str, Any] | None = None) -> NotebookNode:
    """The cells of ``runs`` (a conversation, first question first), as report notebooks have them."""
    builder = NotebookBuilder()
    for run in runs:
        builder.apply_all(run.events)
    if kernelspec:
        builder.notebook.metadata["kernelspec"] = nbformat.from_dict(kernelspec)
    return builder.notebook


def _export(runs: list[Run], notebook_file: Path, target: Path, fmt: str) -> list[Path]:
    """In a worker thread: read the notebook's kernelspec, build, embed, export."""
    kernelspec = None
    try:
        kernelspec = nbformat.read(notebook_file, as_version=4).metadata.get("kernelspec")
    except Exception:  # an unsaved or unreadable notebook: the default kernelspec
        pass
    notebook = conversation_notebook(runs, kernelspec)
    attach_images(notebook, notebook_file.parent)
    return export_notebook(notebook, target, fmt)


class ExportHandler(DeepAnalyzeAPIHandler):
    """``POST /deepanalyze/runs/{id}/export`` with ``{format, notebook_path}`` → ``201 {path, files}``."""

    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        await self.require("write", "contents")  # a file is written in the server root
        body = self.json_object()
        fmt = _optional_str(body, "format")
        if fmt not in EXPORT_FORMATS:
            raise ApiError(400, f"'format' must be one of {', '.join(EXPORT_FORMATS)}.")
        notebook_path = _optional_str(body, "notebook_path")
        if not notebook_path or not notebook_path.endswith(".ipynb"):
            raise ApiError(400, "'notebook_path' must name the notebook (.ipynb) the report is written beside.")
        root = Path(self.serverapp.root_dir).resolve()
        allow_hidden = bool(getattr(self.serverapp.contents_manager, "allow_hidden", False))
        try:
            notebook_file = resolve_under_root(root, notebook_path, allow_hidden=allow_hidden)
        except InputError as exc:
            raise ApiError(400, str(exc)) from None
        run = self.find_run(run_id)
        if not run.finished:
            raise ApiError(409, f"Run {run_id} has not finished: export it once it has.")
        runs = self.services.runs.chain(run_id)
        target = export_name(notebook_file, run_id, fmt)
        try:
            written = await asyncio.to_thread(_export, runs, notebook_file, target, fmt)
        except ExportError as exc:
            raise ApiError(500, str(exc)) from None
        api = lambda path: path.relative_to(root).as_posix()  # noqa: E731
        self.reply({"path": api(target), "format": fmt, "files": [api(p) for p in written]}, status=201)
