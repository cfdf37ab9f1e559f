"""The magic's rendering of a run: events → HTML, plain text and the run's MIME bundle.

Owns ``RunDocument`` (a run's events recorded by the core's ``RunRecorder`` — its
notebook, with outputs cleared and display-updated as the code asked, and its outcome —
plus what only a live view needs: execution statuses and the text of the step being
streamed), the renderers ``render_html`` and ``render_text``, and ``run_bundle`` (the
``application/vnd.deepanalyze.run+json`` bundle of ARCHITECTURE.md with ``text/html``
and ``text/plain`` fallbacks; ``delta`` events are left out to keep it small).

Must not execute anything, create cells or display anything (``views`` does).

Text the model wrote is escaped (Markdown is rendered with raw HTML escaped); rich
outputs of the code it ran are shown as a notebook would show them.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable, Mapping
from typing import Any

from ..events import (
    MIME_TYPE,
    ApprovalRequired,
    Delta,
    Event,
    ExecutionFinished,
    SegmentFinished,
    from_json,
)
from ..feedback import cap_output, format_feedback, strip_ansi
from ..outputs import stream_text
from ..recorder import RunOutcome, RunRecorder

BUNDLE_VERSION = 1
STREAMING_TAIL_CHARS = 1500
"""Characters of the step being streamed that the live display shows (its tail)."""
TEXT_OUTPUT_LIMIT = 8000
"""Characters of one code block's output in text renderings (head and tail kept)."""
HTML_STREAM_LIMIT = 20000
"""Characters of one stream output in the HTML rendering (head and tail kept)."""

BADGES = {
    "error": "error",
    "timeout": "timed out",
    "interrupted": "interrupted",
    "skipped": "skipped",
    "dead": "kernel died",
}


class RunDocument:
    """A run's events so far, as a notebook plus the state a live view shows."""

    def __init__(self) -> None:
        self.recorder = RunRecorder()
        self.events: list[dict[str, Any]] = []
        self.statuses: dict[str, str] = {}
        self.feedback: dict[str, str] = {}
        self.run_id: str | None = None
        self.awaiting_approval: str | None = None
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
    def outcome(self) -> RunOutcome:
        return self.recorder.outcome

    @property
    def cells(self) -> list[Any]:
        return list(self.recorder.notebook.cells)

    @property
    def streaming_text(self) -> str:
        return "".join(self._streaming)

    @property
    def running_cell(self) -> str | None:
        """The code cell created last, while it has not finished."""
        for cell in reversed(self.recorder.notebook.cells):
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
        self.recorder.apply(event)
        if isinstance(event, ApprovalRequired):
            self.awaiting_approval = event.cell_id
        elif isinstance(event, ExecutionFinished):
            self.statuses[event.cell_id] = event.status
            self.feedback[event.cell_id] = event.feedback
            self.awaiting_approval = None

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
        text = format_feedback(cell.source, cell.outputs)  # the text, uncapped: capped below
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
    if status in BADGES:
        lines.append(f"[{BADGES[status]}]")
    return "\n".join(lines)


def status_line(document: RunDocument) -> str:
    """One line on where the run stands; empty once it ended with a status cell of its own."""
    if document.outcome.finished:
        return "Run completed." if document.outcome.status == "completed" else ""
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
    badge = f'<span class="da-badge">{BADGES[status]}</span>' if status in BADGES else ""
    outputs = "".join(output_html(output) for output in cell.outputs)
    return f'{code_html(cell.source)}{badge}<div class="da-outputs">{outputs}</div>'


def render_html(document: RunDocument) -> str:
    """The whole run as one HTML fragment (the bundle's ``text/html``)."""
    parts = [_STYLE, '<div class="deepanalyze-run">']
    parts.extend(cell_html(document, cell) for cell in document.cells)
    live = html.escape(status_line(document))
    streaming = document.streaming_text[-STREAMING_TAIL_CHARS:] if not document.outcome.finished else ""
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


__all__ = [
    "RunDocument",
    "cell_html",
    "code_output_text",
    "render_html",
    "render_text",
    "run_bundle",
    "status_line",
]
