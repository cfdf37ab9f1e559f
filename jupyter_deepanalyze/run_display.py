"""The magic's display of a run: events → HTML, plain text and the run's MIME bundle.

Owns ``RunDocument`` (a run's events materialized by the core's ``NotebookBuilder``,
plus what only a live view needs: execution statuses and the text of the step being
streamed), the renderers ``render_html`` and ``render_text``, ``run_bundle`` (the
``application/vnd.deepanalyze.run+json`` bundle of ARCHITECTURE.md with ``text/html``
and ``text/plain`` fallbacks; ``delta`` events are left out to keep it small) and the
two views the magic drives: ``LiveDisplay`` (one output updated in place through a
display handle, for kernel frontends) and ``TextProgress`` (steps printed as they
finish, for terminal IPython).

Must not execute anything or create cells; views are driven from the shell's thread
only (ipykernel ties displays to the cell that thread is running).

Text the model wrote is escaped (Markdown is rendered with raw HTML escaped); rich
outputs of the code it ran are shown as a notebook would show them.
"""

from __future__ import annotations

import functools
import html
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from .events import (
    MIME_TYPE,
    ApprovalRequired,
    CellCreated,
    Delta,
    Event,
    ExecutionFinished,
    RunFinished,
    SegmentFinished,
    from_json,
)
from .notebook import NotebookBuilder
from .outputs import stream_text
from .protocol import FeedbackOptions, cap_output, format_feedback, strip_ansi

BUNDLE_VERSION = 1
REFRESH_SECONDS = 0.25
"""A live display is redrawn at most this often when steps or outputs arrive."""
STREAMING_REFRESH_SECONDS = 1.0
"""…and at most this often when only the text being streamed changed: each redraw
resends the whole run (figures included), so streamed tokens are coalesced harder."""
STREAMING_TAIL_CHARS = 1500
"""Characters of the step being streamed that the live display shows (its tail)."""
TEXT_OUTPUT_LIMIT = 8000
"""Characters of one code block's output in text renderings (head and tail kept)."""
HTML_STREAM_LIMIT = 20000
"""Characters of one stream output in the HTML rendering (head and tail kept)."""

_BADGES = {
    "error": "error",
    "timeout": "timed out",
    "interrupted": "interrupted",
    "skipped": "skipped",
    "dead": "kernel died",
}


class RunDocument:
    """A run's events so far, as a notebook plus the state a live view shows."""

    def __init__(self) -> None:
        self.builder = NotebookBuilder()
        self.events: list[dict[str, Any]] = []
        self.statuses: dict[str, str] = {}
        self.feedback: dict[str, str] = {}
        self.run_id: str | None = None
        self.awaiting_approval: str | None = None
        self.finished: RunFinished | None = None
        self.stopping = False
        self._streaming_step: int | None = None
        self._streaming: list[str] = []

    @classmethod
    def from_events(cls, events: Iterable[Event | Mapping[str, Any]]) -> RunDocument:
        document = cls()
        for event in events:
            document.apply(event)
        return document

    @property
    def cells(self) -> list[Any]:
        return list(self.builder.notebook.cells)

    @property
    def streaming_text(self) -> str:
        return "".join(self._streaming)

    @property
    def running_cell(self) -> str | None:
        """The code cell created last, while it has not finished."""
        for cell in reversed(self.builder.notebook.cells):
            if cell.cell_type == "code":
                return None if cell.id in self.statuses else str(cell.id)
        return None

    def apply(self, event: Event | Mapping[str, Any]) -> None:
        if not isinstance(event, Event):
            event = from_json(dict(event))
        self.events.append(event.to_json())
        self.run_id = event.run_id
        if isinstance(event, Delta):
            if event.step != self._streaming_step:
                self._streaming_step, self._streaming = event.step, []
            self._streaming.append(event.text)
            return
        if isinstance(event, SegmentFinished):
            self._streaming_step, self._streaming = None, []
            return
        self.builder.apply(event)
        if isinstance(event, ApprovalRequired):
            self.awaiting_approval = event.cell_id
        elif isinstance(event, ExecutionFinished):
            self.statuses[event.cell_id] = event.status
            self.feedback[event.cell_id] = event.feedback
            self.awaiting_approval = None
        elif isinstance(event, RunFinished):
            self.finished = event

    def bundle_events(self) -> list[dict[str, Any]]:
        """The events of the MIME bundle: all but ``delta`` (the finished steps carry the text)."""
        return [event for event in self.events if event["type"] != Delta.type]


# ------------------------------------------------------------------------------ text


def _role(cell: Any) -> str:
    return str(cell.get("metadata", {}).get("deepanalyze", {}).get("role", ""))


def code_output_text(document: RunDocument, cell: Any) -> str:
    """What a code cell printed, as text: what the model was told, or its outputs so far."""
    if cell.id in document.feedback:
        text = document.feedback[cell.id]
    else:
        text = format_feedback(cell.source, cell.outputs, options=FeedbackOptions(limit=None))
    return cap_output(strip_ansi(text), TEXT_OUTPUT_LIMIT)


def cell_text(document: RunDocument, cell: Any) -> str:
    """One cell as terminal text: Markdown as written, code fenced, its output indented."""
    if cell.cell_type != "code":
        return cell.source.strip()
    lines = ["```python", cell.source, "```"]
    output = code_output_text(document, cell).rstrip("\n")
    if output:
        lines.extend("    " + line for line in output.split("\n"))
    status = document.statuses.get(cell.id)
    if status in _BADGES:
        lines.append(f"[{_BADGES[status]}]")
    return "\n".join(lines)


def status_line(document: RunDocument) -> str:
    """One line on where the run stands; empty once it ended with a status cell of its own."""
    if document.finished is not None:
        return "Run completed." if document.finished.status == "completed" else ""
    if document.stopping:
        return "Stopping…"
    if document.awaiting_approval:
        return "Waiting for your approval…"
    if document.running_cell:
        return "Running code…"
    return "Waiting for the model…" if document.run_id else "Starting…"


def render_text(document: RunDocument) -> str:
    """The whole run as plain text (the bundle's ``text/plain``)."""
    parts = [cell_text(document, cell) for cell in document.cells]
    parts.append(status_line(document))
    return "\n\n".join(part for part in parts if part)


# ------------------------------------------------------------------------------ HTML

_STYLE = """<style>
.deepanalyze-run{font-size:var(--jp-content-font-size1,14px);line-height:1.45}
.deepanalyze-run .da-md>:first-child{margin-top:0}
.deepanalyze-run .da-md{margin:0.4em 0}
.deepanalyze-run .da-code{margin:0.5em 0;border-left:3px solid var(--jp-brand-color1,#1976d2);
  background:var(--jp-cell-editor-background,#f7f7f7);padding:4px 8px;overflow-x:auto}
.deepanalyze-run pre{margin:0;white-space:pre-wrap;word-break:break-word;background:none;
  font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,13px)}
.deepanalyze-run .da-outputs{margin:0.2em 0 0.8em 11px;overflow-x:auto}
.deepanalyze-run .da-stderr{background:var(--jp-rendermime-error-background,#fdd)}
.deepanalyze-run .da-error{color:var(--jp-error-color1,#b00020)}
.deepanalyze-run .da-badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;
  background:var(--jp-warn-color2,#ffe0b2);margin-left:6px}
.deepanalyze-run .da-report{border-top:2px solid var(--jp-border-color1,#ccc);padding-top:0.4em;margin-top:0.8em}
.deepanalyze-run .da-live{color:var(--jp-ui-font-color2,#777);font-style:italic;margin-top:0.4em}
.deepanalyze-run .da-live pre{font-style:normal;max-height:12em;overflow:hidden}
.deepanalyze-run img{max-width:100%}
</style>"""


@functools.lru_cache(maxsize=1)
def _markdown() -> Any:
    import mistune

    return mistune.create_markdown(escape=True, plugins=["strikethrough", "table", "url"])


def markdown_html(text: str) -> str:
    """Markdown → HTML with raw HTML escaped (the model's text is not trusted markup)."""
    return str(_markdown()(text))


def code_html(code: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    body = highlight(code, PythonLexer(), HtmlFormatter(nowrap=True, noclasses=True))
    return f'<div class="da-code"><pre>{body}</pre></div>'


def _mime_text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def output_html(output: Mapping[str, Any]) -> str:
    """One nbformat output as a notebook would show it."""
    kind = output.get("output_type")
    if kind == "stream":
        css = "da-stderr" if output.get("name") == "stderr" else "da-stdout"
        text = cap_output(strip_ansi(stream_text(dict(output))), HTML_STREAM_LIMIT)
        return f'<pre class="{css}">{html.escape(text)}</pre>'
    if kind == "error":
        text = strip_ansi(
            "\n".join(output.get("traceback") or [f"{output.get('ename')}: {output.get('evalue')}"])
        )
        return f'<pre class="da-error">{html.escape(text)}</pre>'
    data = output.get("data", {})
    if "text/html" in data:
        return f"<div>{_mime_text(data['text/html'])}</div>"
    for mime in ("image/png", "image/jpeg", "image/gif"):
        if mime in data:
            source = _mime_text(data[mime]).replace("\n", "")
            return f'<img src="data:{mime};base64,{html.escape(source)}" alt="figure"/>'
    if "image/svg+xml" in data:
        # As an <img>, an SVG cannot run scripts.
        import base64

        encoded = base64.b64encode(_mime_text(data["image/svg+xml"]).encode("utf-8")).decode("ascii")
        return f'<img src="data:image/svg+xml;base64,{encoded}" alt="figure"/>'
    if "text/markdown" in data:
        return f'<div class="da-md">{markdown_html(_mime_text(data["text/markdown"]))}</div>'
    if "text/plain" in data:
        return f"<pre>{html.escape(strip_ansi(_mime_text(data['text/plain'])))}</pre>"
    return ""


def cell_html(document: RunDocument, cell: Any) -> str:
    role = _role(cell)
    if cell.cell_type != "code":
        css = "da-md da-report" if role == "report" else "da-md"
        return f'<div class="{css}">{markdown_html(cell.source)}</div>'
    status = document.statuses.get(cell.id)
    badge = f'<span class="da-badge">{_BADGES[status]}</span>' if status in _BADGES else ""
    outputs = "".join(output_html(output) for output in cell.outputs)
    return f'{code_html(cell.source)}{badge}<div class="da-outputs">{outputs}</div>'


def render_html(document: RunDocument) -> str:
    """The whole run as one HTML fragment (the bundle's ``text/html``)."""
    parts = [_STYLE, '<div class="deepanalyze-run">']
    parts.extend(cell_html(document, cell) for cell in document.cells)
    live = html.escape(status_line(document))
    streaming = document.streaming_text[-STREAMING_TAIL_CHARS:] if document.finished is None else ""
    if streaming.strip():
        live += f"<pre>{html.escape(streaming)}</pre>"
    parts.append(f'<div class="da-live">{live}</div></div>')
    return "".join(parts)


def run_bundle(document: RunDocument) -> dict[str, Any]:
    """The display's MIME bundle: the run's events for rich frontends, HTML and text for the rest."""
    return {
        MIME_TYPE: {"version": BUNDLE_VERSION, "run_id": document.run_id, "events": document.bundle_events()},
        "text/html": render_html(document),
        "text/plain": render_text(document),
    }


# ----------------------------------------------------------------------------- views


class LiveDisplay:
    """One output of the magic's cell, redrawn in place as events arrive."""

    def __init__(self) -> None:
        self.document = RunDocument()
        self._handle: Any = None
        self._changed = False  # steps, outputs or statuses
        self._streamed = False  # only the text being streamed
        self._last_draw = 0.0

    @property
    def shown(self) -> bool:
        return self._handle is not None

    def show(self, event: Event) -> None:
        self.document.apply(event)
        if isinstance(event, Delta):
            self._streamed = True
        else:
            self._changed = True

    def stopping(self) -> None:
        self.document.stopping = True
        self._changed = True
        self.flush(force=True)

    def flush(self, *, force: bool = False) -> None:
        if not (self._changed or self._streamed):
            return
        interval = REFRESH_SECONDS if self._changed else STREAMING_REFRESH_SECONDS
        if not force and time.monotonic() - self._last_draw < interval:
            return
        from IPython.display import display

        bundle = run_bundle(self.document)
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        self._changed = self._streamed = False
        self._last_draw = time.monotonic()

    def close(self) -> None:
        self.flush(force=True)


class TextProgress:
    """Terminal IPython: every step printed once, when it is complete."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.document = RunDocument()
        self._stream = stream
        self._printed_any = False

    @property
    def shown(self) -> bool:
        return self._printed_any

    def _print(self, text: str) -> None:
        stream = self._stream or sys.stdout
        print(text + "\n", file=stream, flush=True)
        self._printed_any = True

    def show(self, event: Event) -> None:
        self.document.apply(event)
        if isinstance(event, CellCreated):
            cells = {cell.id: cell for cell in self.document.cells}
            cell = cells.get(event.cell_id)
            if cell is None:
                return
            if cell.cell_type == "code":
                self._print(f"```python\n{cell.source}\n```")
            else:
                self._print(cell.source.strip())
        elif isinstance(event, ExecutionFinished):
            cell = next((c for c in self.document.cells if c.id == event.cell_id), None)
            if cell is None:
                return
            output = code_output_text(self.document, cell).rstrip("\n")
            lines = ["    " + line for line in output.split("\n")] if output else []
            if event.status in _BADGES:
                lines.append(f"[{_BADGES[event.status]}]")
            if lines:
                self._print("\n".join(lines))
        elif isinstance(event, RunFinished) and status_line(self.document):
            self._print(status_line(self.document))

    def stopping(self) -> None:
        self.document.stopping = True
        self._print("Stopping…")

    def flush(self, *, force: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


__all__ = [
    "LiveDisplay",
    "RunDocument",
    "TextProgress",
    "render_html",
    "render_text",
    "run_bundle",
]
