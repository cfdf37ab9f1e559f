"""The DeepAnalyze wire format (shared/PROTOCOL.md), byte for byte.

Owns the tags, the streaming-safe segment parser, code extraction, the first user
message and the two dialects (native DeepAnalyze, generic chat models). The text the
model sees of an execution is ``feedback.py``'s.

Must not do I/O: everything here is a pure function of its arguments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TAGS: tuple[str, ...] = ("Analyze", "Understand", "Code", "Execute", "Answer")
"""Every tag of the format, in the order PROTOCOL.md lists them."""

CODE_CLOSE = "</Code>"
STOP_SEQUENCES: tuple[str, ...] = (CODE_CLOSE,)

_OPEN = {f"<{t}>": t for t in TAGS}
_CLOSE = {f"</{t}>": t for t in TAGS}
_ALL_MARKERS = tuple(_OPEN) + tuple(_CLOSE)
# Inside these tags any other opening tag also ends the segment (a model that forgot a
# closing tag still gets its code run). Inside <Code> only </Code> ends it: code may
# legitimately print "<Answer>".
_IMPLICITLY_CLOSED = frozenset({"Analyze", "Understand", "Execute", "Answer"})


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Segment:
    """One finished piece of a model turn.

    ``tag`` is the tag name, or ``None`` for text written outside any tag (a note).
    ``text`` is the raw content between the tags. ``closed`` is False when the turn
    ended before the closing tag.
    """

    tag: str | None
    text: str
    closed: bool = True


@dataclass(frozen=True)
class SegmentDelta:
    """Text of the segment in progress, as soon as it is certain."""

    tag: str | None
    text: str


_LONGEST_MARKER = max(len(m) for m in _ALL_MARKERS)


def _held_back(buffer: str, start: int, markers: Iterable[str]) -> int:
    """Length of the longest suffix of ``buffer[start:]`` that may still grow into a marker.

    Every marker starts with ``<``: only a ``<`` among the last few characters can begin
    one, so this looks at no more than a marker's length of text.
    """
    position = buffer.find("<", max(start, len(buffer) - _LONGEST_MARKER + 1))
    while position != -1:
        tail = buffer[position:]
        if any(len(tail) < len(marker) and marker.startswith(tail) for marker in markers):
            return len(buffer) - position
        position = buffer.find("<", position + 1)
    return 0


def _next_marker(buffer: str, start: int, markers: Sequence[str]) -> tuple[int, str] | None:
    """The first marker in ``buffer`` at or after ``start``, with its position."""
    position = buffer.find("<", start)
    while position != -1:
        for marker in markers:
            if buffer.startswith(marker, position):
                return position, marker
        position = buffer.find("<", position + 1)
    return None


class SegmentParser:
    """Splits model text into segments while it streams in, in chunks of any size.

    ``feed`` and ``close`` return, in order, ``SegmentDelta`` items (text certain to
    belong to the open segment) and ``Segment`` items (a segment just finished). For
    every finished segment the deltas before it concatenate to its text. Whitespace
    between tags is not a note and yields nothing.

    Linear in the text, whatever its chunking or its tags: each character is looked at
    a bounded number of times (nothing the model sends can make parsing quadratic).
    """

    def __init__(self) -> None:
        self._buffer = ""  # at most a marker's length: text that may begin a marker
        self._tag: str | None = None
        self._text: list[str] = []
        self._note_shown = False  # an outside note has shown non-whitespace (deltas flow)

    @property
    def open_tag(self) -> str | None:
        return self._tag

    def feed(self, chunk: str) -> list[SegmentDelta | Segment]:
        buffer = self._buffer + chunk
        out: list[SegmentDelta | Segment] = []
        position = 0
        while (found := _next_marker(buffer, position, self._markers())) is not None:
            index, marker = found
            self._append(buffer[position:index], out)
            position = index + len(marker)
            self._on_marker(marker, out)
        keep = _held_back(buffer, position, self._markers())
        self._append(buffer[position : len(buffer) - keep], out)
        self._buffer = buffer[len(buffer) - keep :]
        return out

    def close(self) -> list[SegmentDelta | Segment]:
        """End of the turn: whatever is buffered belongs to the open segment."""
        out: list[SegmentDelta | Segment] = []
        self._append(self._buffer, out)
        self._buffer = ""
        self._finish(out, closed=self._tag is None)
        return out

    # -- internals

    def _markers(self) -> tuple[str, ...]:
        if self._tag is None:
            return _ALL_MARKERS
        closing = f"</{self._tag}>"
        if self._tag in _IMPLICITLY_CLOSED:
            return (closing, *_OPEN)
        return (closing,)

    def _on_marker(self, marker: str, out: list[SegmentDelta | Segment]) -> None:
        if marker in _CLOSE:
            if self._tag is not None:  # a stray closing tag outside any segment is dropped
                self._finish(out, closed=True)
        else:
            if self._tag is not None:  # implicitly closed by a new opening tag
                self._finish(out, closed=False)
            else:
                self._finish(out, closed=True)
            self._tag = _OPEN[marker]

    def _append(self, text: str, out: list[SegmentDelta | Segment]) -> None:
        if not text:
            return
        self._text.append(text)
        if self._tag is not None or self._note_shown:
            out.append(SegmentDelta(self._tag, text))
        elif text.strip():
            # Outside any tag nothing is said until the note holds more than whitespace;
            # then everything so far, once.
            self._note_shown = True
            out.append(SegmentDelta(None, "".join(self._text)))

    def _finish(self, out: list[SegmentDelta | Segment], *, closed: bool) -> None:
        text = "".join(self._text)
        tag = self._tag
        self._text = []
        self._note_shown = False
        self._tag = None
        if tag is None and not text.strip():
            return
        out.append(Segment(tag, text, closed if tag is not None else True))


def parse_segments(text: str) -> list[Segment]:
    """All segments of a complete turn."""
    parser = SegmentParser()
    items = parser.feed(text) + parser.close()
    return [item for item in items if isinstance(item, Segment)]


_FENCE = re.compile(r"```")
_FENCE_LANGUAGE = re.compile(r"[ \t]*[A-Za-z0-9_+.-]*[ \t]*\r?\n")


def extract_code(block: str) -> str:
    """The code of a ``<Code>`` block's content.

    As the reference does: if the block holds a ``` fence, the code is the (first)
    fenced part, else the whole block; stripped. Beyond the reference, a language word
    other than ``python`` on the opening fence line (```py) is skipped too, and a fence
    that is never closed runs to the end of the block.
    """
    start, end, _ = _code_span(block)
    return block[start:end].strip()


def _code_span(block: str) -> tuple[int, int, bool]:
    """Where ``extract_code(block)`` sits in ``block`` (start, end), and whether it is
    inside a fence whose opening line ended with a newline."""
    lead = len(block) - len(block.lstrip())
    content = block.strip()
    opening = _FENCE.search(content)
    if opening is None:
        return lead, lead + len(content), False
    start = opening.end()
    language = _FENCE_LANGUAGE.match(content, start)
    if language is not None:
        start = language.end()
    closing = _FENCE.search(content, start)
    end = closing.start() if closing is not None else len(content)
    inner = content[start:end]
    if not inner.strip():
        return lead + start, lead + end, language is not None
    left = len(inner) - len(inner.lstrip())
    return lead + start + left, lead + start + len(inner.rstrip()), language is not None


def replace_code(turn: str, code: str) -> str:
    """``turn`` with the code of its first ``<Code>`` block replaced by ``code``.

    Only the code changes: the block keeps its form (the fence and its language word, or
    none) and every other character of the turn stays, even where the old code also
    appears (quoted in ``<Analyze>``). The first ``<Code>`` in the text always opens the
    first code block (every other tag is closed by it). An empty block gets the code on
    lines of its own.
    """
    code = code.strip()
    opening = turn.find("<Code>")
    if opening == -1:
        return turn
    body = opening + len("<Code>")
    closing = turn.find(CODE_CLOSE, body)
    end = closing if closing != -1 else len(turn)
    block = turn[body:end]
    if not block.strip():
        replaced = f"\n{code}\n"
    else:
        start, stop, after_newline = _code_span(block)
        inserted = code
        if not block[start:stop].strip():  # an empty fence: the code on its own lines
            inserted = f"{code}\n" if after_newline else f"\n{code}\n"
        replaced = block[:start] + inserted + block[stop:]
        if extract_code(replaced) != code:  # code that would break the fence (it holds ```)
            replaced = f"\n{code}\n"
    return turn[:body] + replaced + turn[end:]


def first_code_block(text: str) -> str | None:
    """Content of the first ``<Code>…</Code>`` block of a turn, or None."""
    for segment in parse_segments(text):
        if segment.tag == "Code":
            return segment.text
    return None


def close_open_code(text: str) -> str:
    """Close a ``<Code>`` block left open (servers that do not report ``stop_reason``)."""
    segments = parse_segments(text)
    if segments and segments[-1].tag == "Code" and not segments[-1].closed:
        return text + CODE_CLOSE
    return text


# --------------------------------------------------------------------- first message


@dataclass(frozen=True)
class DataFile:
    """A file the model can open by ``name`` from the working directory."""

    name: str
    size_bytes: int
    columns: Sequence[str] = ()
    """A table's header, when known; the native first message leaves it out (as the
    reference does), a dialect that asks for it (``Dialect.describe_columns``) shows it."""


@dataclass(frozen=True)
class VariableInfo:
    """A live variable of the kernel (our addition to the first message)."""

    name: str
    type: str
    shape: Sequence[int] | None = None
    columns: Sequence[tuple[str, str]] = ()
    memory_bytes: int | None = None
    more_columns: int = 0
    """Columns beyond those listed in ``columns`` (a very wide frame described in part)."""


def format_size(size_bytes: int) -> str:
    """``bytes/1024`` with one decimal and ``KB``: ``"0.5KB"``, ``"1536.0KB"``."""
    return f"{size_bytes / 1024:.1f}KB"


_MAX_COLUMNS_DESCRIBED = 40


def describe_variable(variable: VariableInfo) -> dict[str, Any]:
    """Short, factual description of a variable for the ``# Data`` section."""
    described: dict[str, Any] = {"name": variable.name, "type": variable.type}
    if variable.shape is not None:
        described["shape"] = list(variable.shape)
    if variable.columns:
        shown = [f"{name} ({dtype})" for name, dtype in variable.columns[:_MAX_COLUMNS_DESCRIBED]]
        hidden = len(variable.columns) - len(shown) + variable.more_columns
        if hidden > 0:
            shown.append(f"... {hidden} more")
        described["columns"] = ", ".join(shown)
    return described


def build_first_message(
    instruction: str,
    files: Sequence[DataFile] = (),
    variables: Sequence[VariableInfo] = (),
    *,
    columns: bool = False,
    more_files: int = 0,
) -> str:
    """The one user message of a run (no system prompt for the native model).

    ``columns`` adds each file's known header to its entry (not in the reference format).
    ``more_files`` counts files left out of a bounded listing: a line after the entries
    says how many (the reference lists every file of its small upload folder).
    """
    message = f"# Instruction\n{instruction.strip()}"
    if not files and not variables and not more_files:
        return message
    data = ""
    for index, data_file in enumerate(sorted(files, key=lambda f: f.name), start=1):
        entry = {"name": data_file.name, "size": format_size(data_file.size_bytes)}
        if columns and data_file.columns:
            shown = list(data_file.columns[:_MAX_COLUMNS_DESCRIBED])
            hidden = len(data_file.columns) - len(shown)
            entry["columns"] = ", ".join(shown) + (f", ... {hidden} more" if hidden > 0 else "")
        data += f"File {index}:\n{json.dumps(entry, indent=4, ensure_ascii=False)}\n\n"
    if more_files:
        data += f"... and {more_files} more files\n\n"
    if variables:
        data += "Variables already defined in the running Python session:\n"
        for index, variable in enumerate(variables, start=1):
            described = json.dumps(describe_variable(variable), indent=4, ensure_ascii=False)
            data += f"Variable {index}:\n{described}\n\n"
    return f"{message}\n\n# Data\n{data}"


# -------------------------------------------------------------------------- dialects

GENERIC_SYSTEM_PROMPT = """\
You are a data scientist working in a Python (Jupyter) session. Solve the task step by \
step, writing every part of your reply inside exactly one of these tags:

<Analyze>your plan and reasoning</Analyze>
<Understand>what the data or the last output shows</Understand>
<Code>
```python
# Python code to run now; print what you need to see
```
</Code>
<Answer>the final answer or report, in Markdown</Answer>

Rules:
- Write at most one <Code> block per reply and stop right after </Code>.
- The environment runs the code and replies with its output inside \
<Execute>...</Execute>. Never write <Execute> yourself.
- The data files named in the task are in the current working directory.
- Variables defined in earlier code stay defined.
- When you have the result, give it inside <Answer>...</Answer>; that ends the task."""


@dataclass(frozen=True)
class Dialect:
    """How a conversation is laid out for one family of models."""

    name: str
    system_prompt: str | None
    execute_role: str
    request_extras: Mapping[str, Any] = field(default_factory=dict)
    examples: tuple[Mapping[str, str], ...] = ()
    """Few-shot messages placed before the task (small models need to see the format)."""
    describe_columns: bool = False
    """The first message names each data file's columns (small models need them spelled out)."""

    def first_message(
        self,
        instruction: str,
        files: Sequence[DataFile] = (),
        variables: Sequence[VariableInfo] = (),
        more_files: int = 0,
    ) -> str:
        return build_first_message(
            instruction, files, variables, columns=self.describe_columns, more_files=more_files
        )

    def initial_messages(self, first_message: str) -> list[dict[str, str]]:
        messages = [dict(m) for m in self.examples] + [{"role": "user", "content": first_message}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def template_options(self, last_role: str) -> dict[str, bool]:
        """``apply_chat_template`` flags for a conversation ending with ``last_role``.

        A dialect whose requests fix ``add_generation_prompt`` (the native one: False,
        as the reference asks vLLM) renders with that value on every path, and the
        model's own template decides what follows. Otherwise a conversation ending with
        the user opens an assistant turn, one ending with the assistant continues its
        message, and one ending with an ``execute`` message is left as the template renders
        it (a template that knows the role keeps the assistant's turn open after it).
        """
        if "add_generation_prompt" in self.request_extras:
            return {"add_generation_prompt": bool(self.request_extras["add_generation_prompt"])}
        if last_role == "assistant":
            return {"add_generation_prompt": False, "continue_final_message": True}
        return {"add_generation_prompt": last_role == "user"}

    def execute_message(self, output: str) -> dict[str, str]:
        if self.execute_role == "execute":
            return {"role": "execute", "content": output}
        return {"role": "user", "content": f"<Execute>\n{output}\n</Execute>"}

    def execute_output(self, message: Mapping[str, str]) -> str | None:
        """The output ``message`` carries if it is an :meth:`execute_message`, else None."""
        content = str(message.get("content", ""))
        if self.execute_role == "execute":
            return content if message.get("role") == "execute" else None
        opening, closing = "<Execute>\n", "\n</Execute>"
        if message.get("role") == "user" and content.startswith(opening) and content.endswith(closing):
            return content[len(opening) : len(content) - len(closing)]
        return None


NATIVE = Dialect(
    name="native",
    system_prompt=None,
    execute_role="execute",
    request_extras={"add_generation_prompt": False},
)
GENERIC = Dialect(name="generic", system_prompt=GENERIC_SYSTEM_PROMPT, execute_role="user")
DIALECTS = {d.name: d for d in (NATIVE, GENERIC)}


def dialect_for(model_name: str, override: str = "auto") -> Dialect:
    """Native for DeepAnalyze models, generic for every other chat model."""
    if override != "auto":
        try:
            return DIALECTS[override]
        except KeyError:
            raise ValueError(f"unknown dialect {override!r}: use auto, native or generic") from None
    return NATIVE if "deepanalyze" in model_name.lower().replace("-", "").replace("_", "") else GENERIC
