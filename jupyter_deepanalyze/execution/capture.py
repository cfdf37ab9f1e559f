"""What one code block shows while it runs in the calling IPython shell.

Owns ``BlockCapture``: the hooks installed around a block — ``sys.stdout``/``sys.stderr``
(Python-level writes; output C code writes straight to the file descriptors is not
captured), the shell's display publisher (``display()``, display updates,
``clear_output()``), ``sys.displayhook`` (a trailing expression's value), the shell's
traceback printer and ``input()`` (refused, as ``KernelExecutor`` refuses stdin) — each
turned into the kernel's message type for the block's ``OutputAccumulator``; and
matplotlib figures a non-inline backend left open, as ``image/png`` outputs (never left
for the inline backend to show loose in the user's cell).

Must not leave anything swapped: ``restore`` puts every hook back, and it is idempotent
so that an interrupt landing in the middle of restoring can be retried.
"""

from __future__ import annotations

import base64
import builtins
import io
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..feedback import ExecutionError
from ..outputs import Output, OutputAccumulator

_MISSING = object()


def _clean_bundle(data: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe MIME bundle: binary images as base64 text, as nbformat stores them."""
    from jupyter_client.jsonutil import json_clean

    cleaned: dict[str, Any] = {}
    for mime, value in data.items():
        if isinstance(value, bytes) and not mime.startswith("image/"):
            value = value.decode("utf-8", "replace")
        try:
            cleaned[str(mime)] = json_clean(value)
        except ValueError:  # not JSON-able: keep the other representations
            continue
    return cleaned


class BlockCapturedStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` while a block runs."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, capture: BlockCapture, name: str) -> None:
        super().__init__()
        self._capture = capture
        self._name = name

    @property
    def name(self) -> str:
        return f"<{self._name}>"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._capture.stream(self._name, text)
        return len(text)

    def flush(self) -> None:
        pass


def _display_publisher(capture: BlockCapture, shell: Any) -> Any:
    from IPython.core.displaypub import DisplayPublisher

    class CapturingDisplayPublisher(DisplayPublisher):
        """``display()`` and ``clear_output()`` while a block runs."""

        def publish(
            self,
            data: Mapping[str, Any],
            metadata: Mapping[str, Any] | None = None,
            source: str | None = None,
            *,
            transient: Mapping[str, Any] | None = None,
            update: bool = False,
            **kwargs: Any,
        ) -> None:
            capture.display(data, metadata or {}, transient or {}, update)

        def clear_output(self, wait: bool = False) -> None:
            capture.clear(wait)

    return CapturingDisplayPublisher(shell=shell)


class _CapturingDisplayHook:
    """``sys.displayhook`` while a block runs: a trailing expression's value."""

    def __init__(self, capture: BlockCapture, shell: Any, code: str) -> None:
        self._capture = capture
        self._shell = shell
        self._code = code

    def _quiet(self) -> bool:
        from IPython.core.displayhook import DisplayHook

        try:
            return bool(DisplayHook.semicolon_at_end_of_expression(self._code))
        except Exception:  # code that does not tokenize has already failed to compile
            return False

    def __call__(self, value: Any = None) -> None:
        if value is None or self._quiet():
            return
        data, metadata = self._shell.display_formatter.format(value)
        if data:
            self._capture.result(data, metadata)


class BlockCapture:
    """Everything one block shows, in order, in an ``OutputAccumulator``.

    The hooks translate what they see into the kernel's message types, so the block's
    outputs follow the same rules (one ``msg_type`` dispatch) as a kernel's.
    """

    def __init__(self, shell: Any, code: str, stream_limit: int | None) -> None:
        self.shell = shell
        self.outputs = OutputAccumulator(stream_limit=stream_limit)
        self._lock = threading.Lock()  # threads the block starts may print too
        self._stdout = BlockCapturedStream(self, "stdout")
        self._stderr = BlockCapturedStream(self, "stderr")
        self._display_pub = _display_publisher(self, shell)
        self._displayhook = _CapturingDisplayHook(self, shell, code)
        self._saved: list[tuple[Any, str, Any]] = []

    # -- what the block shows

    def handle(self, msg_type: str, content: Mapping[str, Any]) -> None:
        with self._lock:
            self.outputs.handle(msg_type, content)

    def stream(self, name: str, text: str) -> None:
        self.handle("stream", {"name": name, "text": text})

    def display(
        self, data: Mapping[str, Any], metadata: Mapping[str, Any], transient: Mapping[str, Any], update: bool
    ) -> None:
        content = {"data": _clean_bundle(data), "metadata": _clean_bundle(metadata), "transient": dict(transient)}
        self.handle("update_display_data" if update else "display_data", content)

    def result(self, data: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        # Not a history entry of the shell (store_history=False): no count.
        content = {"data": _clean_bundle(data), "metadata": _clean_bundle(metadata), "execution_count": None}
        self.handle("execute_result", content)

    def clear(self, wait: bool) -> None:
        self.handle("clear_output", {"wait": wait})

    def traceback(self, etype: type[BaseException], evalue: BaseException, stb: list[str]) -> None:
        """Replaces the shell's ``_showtraceback``: the kernel's ``error`` output, kept here."""
        self.handle("error", {"ename": etype.__name__, "evalue": str(evalue), "traceback": list(stb)})

    def figure(self, png: bytes, text: str) -> None:
        data = {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}
        self.handle("display_data", {"data": data, "metadata": {}})

    @property
    def errors(self) -> list[ExecutionError]:
        with self._lock:
            return [ExecutionError(o["ename"], o["evalue"], tuple(o["traceback"])) for o in self.outputs.errors]

    def finish(self) -> list[Output]:
        with self._lock:
            return self.outputs.finish()

    # -- installing and restoring the hooks

    def install(self) -> None:
        shell = self.shell
        swaps: list[tuple[Any, str, Any]] = [
            (sys, "stdout", self._stdout),
            (sys, "stderr", self._stderr),
            (sys, "displayhook", self._displayhook),
            (shell, "display_pub", self._display_pub),
            # Outside a cell (no outer run_cell), run_cell's DisplayTrap would put the
            # shell's own displayhook back in sys.displayhook: give it ours too.
            (shell.display_trap, "hook", self._displayhook),
            (builtins, "input", _no_input),
        ]
        # Save everything before changing anything: an interrupt halfway is restorable.
        self._saved = [(owner, name, getattr(owner, name)) for owner, name, _ in swaps]
        self._saved.append((shell, "_showtraceback", vars(shell).get("_showtraceback", _MISSING)))
        for owner, name, value in swaps:
            setattr(owner, name, value)
        shell._showtraceback = self.traceback

    def restore(self) -> None:
        """Put every hook back (idempotent)."""
        for owner, name, value in reversed(self._saved):
            if value is _MISSING:
                vars(owner).pop(name, None)
            else:
                setattr(owner, name, value)


def to_completion(step: Callable[[], None]) -> bool:
    """Run an idempotent cleanup step to the end even if ``KeyboardInterrupt`` lands in it.

    Returns whether one did (it is not lost: the caller treats the block as interrupted).
    """
    interrupted = False
    while True:
        try:
            step()
            return interrupted
        except KeyboardInterrupt:
            interrupted = True


def _no_input(prompt: str = "") -> str:
    # As in KernelExecutor (allow_stdin=False): the agent's code never waits for a user.
    from IPython.core.error import StdinNotImplementedError

    raise StdinNotImplementedError("input() is not available to code the agent runs")


def open_figures() -> dict[int, Any]:
    """Open matplotlib figures by number (empty when pyplot was never imported)."""
    helpers = sys.modules.get("matplotlib._pylab_helpers")
    if helpers is None or "matplotlib.pyplot" not in sys.modules:
        return {}
    return {manager.num: manager.canvas.figure for manager in helpers.Gcf.get_all_fig_managers()}


def capture_new_figures(capture: BlockCapture, before: Mapping[int, Any]) -> None:
    """With a non-inline backend, figures the block left open become PNG outputs and are closed.

    The inline backend shows (and, unless configured not to, closes) a block's figures
    itself at ``post_execute``, which runs inside the capture; it is left alone. Other
    backends would leave them open, unseen, or shown loose later.
    """
    figures = {num: fig for num, fig in open_figures().items() if before.get(num) is not fig}
    if not figures or "inline" in str(sys.modules["matplotlib"].get_backend()).lower():
        return
    from IPython.core.pylabtools import print_figure

    pyplot = sys.modules["matplotlib.pyplot"]
    for num in sorted(figures):
        figure = figures[num]
        try:
            png = print_figure(figure, "png", bbox_inches="tight")
        except Exception as exc:  # a figure that cannot draw: say so, as the code's stderr
            capture.stream("stderr", f"[figure {num} could not be drawn: {type(exc).__name__}: {exc}]\n")
        else:
            if png:
                capture.figure(png, repr(figure))
        pyplot.close(figure)


__all__ = ["BlockCapture", "capture_new_figures", "open_figures", "to_completion"]
