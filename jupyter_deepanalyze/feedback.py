"""What the model is told of an execution: PROTOCOL.md, "What the model sees of an execution".

Owns ``format_feedback`` (stdout with results and displays in their order, then stderr;
the reference's ``[Error]:`` and ``[Timeout]:`` forms; figures as one-line placeholders;
the cap with head and tail kept), its switches ``FeedbackOptions`` (the product's values
come from ``DeepAnalyze.feedback_options()``), ``ExecutionError`` and the helpers that
read IPython's tracebacks.

Must not do I/O: everything here is a pure function of its arguments.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FeedbackOptions:
    """Our deliberate improvements over the reference, each switchable for parity.

    These defaults are the format itself (improvements on, nothing capped); the
    product's settings, the cap included, come from ``DeepAnalyze.feedback_options()``.
    """

    keep_output_before_error: bool = True
    show_results: bool = True  # trailing-expression values and display() text
    limit: int | None = None  # characters (head and tail kept); None sends everything


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CELL_LINE = re.compile(r"(?:Cell In\s*\[\d*\], line (\d+)|Input In \[\d*\].*?<cell line: (\d+)>)")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def error_line_number(traceback: Sequence[str]) -> int | None:
    """Line of the executed block where it failed, from IPython's ``Cell In[k], line N``."""
    for frame in traceback:
        match = _CELL_LINE.search(strip_ansi(frame))
        if match:
            return int(match.group(1) or match.group(2))
    return None


# IPython names a cell's source file "1234567.py" (or "<ipython-input-…>"); a SyntaxError
# message quotes it. The reference ran code through exec(), which says "<string>".
_CELL_FILENAME = re.compile(r"\((?:\d+\.py|<ipython-input-[^>]*>), line (\d+)\)")


def format_error(code: str, ename: str, evalue: str, line: int | None) -> str:
    """The reference's ``[Error]:`` form (stripped, no trailing newline)."""
    evalue = _CELL_FILENAME.sub(r"(<string>, line \1)", evalue)
    lines = code.splitlines()
    message = "Traceback (most recent call last):\n"
    if line is not None and 1 <= line <= len(lines):
        message += f'  File "<string>", line {line}, in <module>\n'
        message += f"    {lines[line - 1].strip()}\n"
    message += f"{ename}: {evalue}"
    return f"[Error]:\n{message.strip()}"


def format_timeout(seconds: float) -> str:
    return f"[Timeout]: execution exceeded {seconds:g} seconds"


def cap_output(text: str, limit: int | None) -> str:
    """Keep the head and tail of ``text`` when it exceeds ``limit`` characters."""
    if limit is None or len(text) <= limit:
        return text
    head = limit * 2 // 5
    tail = limit - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n... [{omitted} characters omitted] ...\n{text[-tail:]}"


def png_size(data: str | bytes) -> tuple[int, int] | None:
    """Width and height of a (base64) PNG, read from its IHDR chunk."""
    try:
        raw = base64.b64decode(data[:64]) if isinstance(data, str) else data[:32]
    except (ValueError, TypeError):
        return None
    if len(raw) < 24 or raw[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _rich_text(data: Mapping[str, Any], figure_number: int) -> tuple[str, bool]:
    """Text a display or result shows the model, and whether it was a figure."""
    for mime, kind in (("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/svg+xml", "SVG")):
        if mime in data:
            size = png_size(_text(data[mime])) if kind == "PNG" else None
            dims = f"{size[0]}x{size[1]} " if size else ""
            return f"[figure {figure_number}: {dims}{kind}]\n", True
    if "text/plain" in data:
        text = _text(data["text/plain"])
        return (text if text.endswith("\n") else text + "\n"), False
    return "", False


@dataclass(frozen=True)
class ExecutionError:
    """An exception raised by executed code (the kernel's ``error`` output)."""

    ename: str
    evalue: str
    traceback: Sequence[str] = field(default_factory=tuple)


def format_feedback(
    code: str,
    outputs: Sequence[Mapping[str, Any]],
    *,
    error: ExecutionError | None = None,
    timeout: float | None = None,
    options: FeedbackOptions = FeedbackOptions(),
) -> str:
    """``OUTPUT`` of PROTOCOL.md: what the model is told an execution printed.

    ``outputs`` are nbformat output dicts. stdout (with results and displays in their
    order) comes first, then stderr, as the reference concatenates them.
    """
    stdout: list[str] = []
    stderr: list[str] = []
    figures = 0
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            (stderr if output.get("name") == "stderr" else stdout).append(_text(output["text"]))
        elif kind in ("execute_result", "display_data") and options.show_results:
            text, is_figure = _rich_text(output.get("data", {}), figures + 1)
            figures += is_figure
            stdout.append(text)
        elif kind == "error" and error is None:
            error = ExecutionError(output["ename"], output["evalue"], output.get("traceback", ()))
    printed = "".join(stdout) + "".join(stderr)
    if error is None and timeout is None:
        return cap_output(printed, options.limit)
    if timeout is not None:
        ending = format_timeout(timeout)
    else:
        assert error is not None
        ending = format_error(
            code, error.ename, strip_ansi(error.evalue), error_line_number(error.traceback)
        )
    if not options.keep_output_before_error or not printed:
        return cap_output(ending, options.limit)
    separator = "" if printed.endswith("\n") else "\n"
    return cap_output(f"{printed}{separator}{ending}", options.limit)
