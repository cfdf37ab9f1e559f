"""One cell's outputs as a Jupyter frontend shows them, and what sinks must be told of them.

Owns ``OutputAccumulator``, fed by one ``msg_type`` dispatch (``handle``) with what code
shows — ``stream``, ``display_data``, ``execute_result``, ``error``,
``update_display_data``, ``clear_output`` — and the rules every executor and sink
shares: consecutive streams of the same name merge into one output; ``clear_output``
clears now, or with ``wait`` just before the next new output (as JupyterLab's output
area does; a display update is not a new output); ``update_display_data`` replaces every
output carrying that display id (in other cells too: it is recorded for the sinks);
stream text past a cap keeps its head and its tail, with one line saying how much was cut.

Owns ``OutputSync``, which turns the accumulator's state into ``OutputChange`` items
(``NewOutput``, ``ClearOutputs``) — whatever brings a sink's copy of the cell to the same
outputs — so a progress loop that clears and redraws a thousand times sends only what
changed between two syncs.

Must not know about kernels, threads or events.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

Output = dict[str, Any]


@dataclass(frozen=True)
class NewOutput:
    """Append ``output`` to the cell; with ``update``, replace every output of the run that
    carries ``display_id`` instead (``update_display_data``)."""

    output: Output
    display_id: str | None = None
    update: bool = False


@dataclass(frozen=True)
class ClearOutputs:
    """Clear the cell's outputs (now, or with ``wait`` when its next output arrives)."""

    wait: bool = False


OutputChange = Union[NewOutput, ClearOutputs]

_RICH = ("display_data", "execute_result")


def stream_text(output: Mapping[str, Any]) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else str(text)


def cut_note(name: str, count: int) -> Output:
    """The line that stands where stream text was cut."""
    return {"output_type": "stream", "name": name, "text": f"\n[... {count} characters of output cut here ...]\n"}


def output_from_content(msg_type: str, content: Mapping[str, Any]) -> Output:
    """An nbformat output from an iopub message's content (``update_display_data`` gives
    the ``display_data`` it turns the old one into)."""
    if msg_type == "stream":
        return {"output_type": "stream", "name": content["name"], "text": content["text"]}
    if msg_type == "error":
        return {
            "output_type": "error",
            "ename": content["ename"],
            "evalue": content["evalue"],
            "traceback": list(content.get("traceback", ())),
        }
    output = {
        "output_type": "execute_result" if msg_type == "execute_result" else "display_data",
        "data": dict(content.get("data", {})),
        "metadata": dict(content.get("metadata", {})),
    }
    if msg_type == "execute_result":
        output["execution_count"] = content.get("execution_count")
    return output


class OutputAccumulator:
    """The outputs of one cell. ``outputs`` may be a cell's own list (sinks share it).

    ``stream_limit`` bounds the stream characters kept: the first half as they come, then
    the latest ones up to the limit; what falls between is cut and noted. Output dicts are
    replaced, never changed in place, so a copy of the list is a stable snapshot.
    """

    def __init__(self, outputs: list[Output] | None = None, *, stream_limit: int | None = None) -> None:
        self.outputs: list[Output] = outputs if outputs is not None else []
        self.display_ids: list[str | None] = [None] * len(self.outputs)
        self.updates: dict[str, Output] = {}
        """Display updates since the last sync, by display id (the last one wins)."""
        self.errors: list[Output] = []
        """Every ``error`` output shown, even if cleared later."""
        self.version = 0
        """Counts changes: a sync is needed when it moved."""
        self._limit = stream_limit
        self._clear_pending = False
        self._stream_chars = 0
        self._tail: deque[tuple[str, str]] = deque()  # stream text held back past the head
        self._tail_chars = 0
        self._cut = 0
        self._cut_name = "stdout"

    # ------------------------------------------------------------------ the dispatch

    def handle(self, msg_type: str, content: Mapping[str, Any]) -> None:
        """Apply one message of what the code shows; other message types show nothing."""
        if msg_type == "stream":
            self.add_stream(content["name"], content["text"])
        elif msg_type in _RICH or msg_type == "error":
            output = output_from_content(msg_type, content)
            if msg_type == "error":
                self.errors.append(output)
            self.add(output, display_id=_display_id(content))
        elif msg_type == "update_display_data":
            display_id = _display_id(content)
            if display_id:
                self.update(display_id, output_from_content("display_data", content))
        elif msg_type == "clear_output":
            self.clear(wait=bool(content.get("wait", False)))

    # ------------------------------------------------------------------ the rules

    def add(self, output: Output, display_id: str | None = None) -> None:
        """Append a new output (a stream merges into a stream of the same name before it)."""
        if output.get("output_type") == "stream":
            self.add_stream(output["name"], stream_text(output), like=output)
            return
        self._apply_pending_clear()
        self._release_tail()
        self.outputs.append(output)
        self.display_ids.append(display_id)
        self.version += 1

    def add_stream(self, name: str, text: str, *, like: Output | None = None) -> None:
        if not text:
            return
        self._apply_pending_clear()
        if self._limit is not None:
            head_room = self._limit // 2 - self._stream_chars
            if head_room < len(text) or self._tail:
                kept, text = text[: max(head_room, 0)], text[max(head_room, 0) :]
                if kept:
                    self._append_stream(name, kept, like)
                self._hold(name, text)
                return
        self._append_stream(name, text, like)

    def update(self, display_id: str, output: Output) -> None:
        """``update_display_data``: every output carrying ``display_id`` becomes ``output``."""
        for index, shown in enumerate(self.display_ids):
            if shown == display_id:
                self.outputs[index] = output
        self.updates[display_id] = output
        self.version += 1

    def clear(self, wait: bool = False) -> None:
        if wait:
            self._clear_pending = True
            return
        self._clear_pending = False
        self.outputs.clear()
        self.display_ids.clear()
        self._stream_chars = 0
        self._tail.clear()
        self._tail_chars = self._cut = 0
        self.version += 1

    def finish(self) -> list[Output]:
        """Put held-back stream text (and the cut line) in place; returns ``outputs``."""
        self._release_tail()
        return self.outputs

    # ------------------------------------------------------------------ internals

    def _apply_pending_clear(self) -> None:
        if self._clear_pending:
            self.clear()

    def _append_stream(self, name: str, text: str, like: Output | None = None) -> None:
        self._stream_chars += len(text)
        last = self.outputs[-1] if self.outputs else None
        if last is not None and last.get("output_type") == "stream" and last.get("name") == name:
            merged = copy.copy(last)
            merged["text"] = stream_text(last) + text
            self.outputs[-1] = merged
        else:
            output = copy.copy(like) if like is not None else {"output_type": "stream", "name": name}
            output["text"] = text
            self.outputs.append(output)
            self.display_ids.append(None)
        self.version += 1

    def _hold(self, name: str, text: str) -> None:
        """Keep ``text`` as the latest stream text, dropping the oldest held past the limit."""
        assert self._limit is not None
        self._tail.append((name, text))
        self._tail_chars += len(text)
        room = max(self._limit - self._stream_chars, 0)
        while self._tail_chars > room:
            oldest_name, oldest = self._tail[0]
            drop = min(len(oldest), self._tail_chars - room)
            if not self._cut:
                self._cut_name = oldest_name
            self._cut += drop
            self._tail_chars -= drop
            if drop == len(oldest):
                self._tail.popleft()
            else:
                self._tail[0] = (oldest_name, oldest[drop:])

    def _release_tail(self) -> None:
        if not self._tail and not self._cut:
            return
        held, cut = list(self._tail), self._cut
        self._tail.clear()
        self._tail_chars = self._cut = 0
        if cut:
            note = cut_note(self._cut_name, cut)
            self._append_stream(note["name"], note["text"])
            self._stream_chars -= len(note["text"])  # the note is not the code's output
        for name, text in held:
            self._append_stream(name, text)


def _display_id(content: Mapping[str, Any]) -> str | None:
    display_id = (content.get("transient") or {}).get("display_id")
    return str(display_id) if display_id else None


class OutputSync:
    """What a sink must be sent so that its copy of the cell equals ``accumulator``'s.

    Each :meth:`changes` call returns the changes since the previous one: display updates,
    then the outputs appended (a stream that grew sends only its new text, which the sink
    merges); when earlier outputs changed in any other way (a clear), a ``ClearOutputs``
    and every output.
    """

    def __init__(self, accumulator: OutputAccumulator) -> None:
        self.accumulator = accumulator
        self._sent: list[tuple[Output, str | None]] = []
        self._version = -1

    @property
    def pending(self) -> bool:
        return self.accumulator.version != self._version

    def changes(self) -> list[OutputChange]:
        accumulator = self.accumulator
        if not self.pending:
            return []
        self._version = accumulator.version
        changes: list[OutputChange] = []
        sent = self._sent
        for display_id, output in accumulator.updates.items():
            changes.append(NewOutput(output, display_id=display_id, update=True))
            sent = [(output if shown == display_id else old, shown) for old, shown in sent]
        accumulator.updates.clear()
        current = list(zip(accumulator.outputs, accumulator.display_ids))
        same = 0
        while same < min(len(sent), len(current)) and _same(sent[same], current[same]):
            same += 1
        if same == len(sent):
            new = current[same:]
        elif same == len(sent) - 1 and _grew(sent[same][0], current[same][0]):
            grown = current[same][0]
            extra = stream_text(grown)[len(stream_text(sent[same][0])) :]
            changes.append(NewOutput({"output_type": "stream", "name": grown["name"], "text": extra}))
            new = current[same + 1 :]
        else:
            changes.append(ClearOutputs())
            new = current
        changes.extend(NewOutput(output, display_id=display_id) for output, display_id in new)
        self._sent = current
        return changes


def _same(a: tuple[Output, str | None], b: tuple[Output, str | None]) -> bool:
    return a[1] == b[1] and (a[0] is b[0] or a[0] == b[0])


def _grew(old: Output, new: Output) -> bool:
    return (
        old.get("output_type") == new.get("output_type") == "stream"
        and old.get("name") == new.get("name")
        and stream_text(new).startswith(stream_text(old))
    )
