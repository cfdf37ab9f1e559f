"""``InProcessExecutor``: run the model's code in the calling IPython shell (the magic).

Owns executing a code block with ``shell.run_cell`` in the user's own namespace, on the
thread that owns the shell, and turning what the block shows into nbformat outputs:
stdout and stderr (Python-level ``sys.stdout``/``sys.stderr``; output written straight
to the file descriptors by C code is not captured), ``display()`` and trailing-expression
results, matplotlib figures (as ``image/png``, never also left for the inline backend to
show loose in the user's cell), and tracebacks. The model's feedback comes from
``protocol.format_feedback``, as for ``KernelExecutor``.

Threads: the agent's asyncio loop runs on another thread (the shell's own loop, if any,
is busy running the magic). ``execute`` hands each block to the shell's thread through
a ``ShellThreadQueue`` that the magic pumps; awaited on the shell's thread itself it runs
the block inline, as a kernel would.

Timeouts and interrupts: in-process code cannot be pre-empted safely, so a timeout (or
``interrupt()``) raises ``KeyboardInterrupt`` in the shell's thread, as Ctrl-C would:
``SIGINT`` sent to that thread when it is the main thread (it also breaks blocking calls
such as ``time.sleep``), else an asynchronous exception. Code that swallows
``KeyboardInterrupt`` is poked again every ``INTERRUPT_GRACE_SECONDS`` but cannot be
forced to stop. A ``KeyboardInterrupt`` this executor did not send is the user's (the
Stop button): the block ends ``interrupted`` and ``on_interrupt`` is called.

Must not leave anything swapped: every hook it installs around a block is restored,
even when an interrupt lands in the middle of restoring it.
"""

from __future__ import annotations

import _thread
import asyncio
import base64
import builtins
import concurrent.futures
import contextlib
import ctypes
import inspect
import io
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..outputs import Output, append_output, dropped_stream_note
from ..protocol import ExecutionError, FeedbackOptions, format_feedback, strip_ansi
from . import ExecutionFailure, ExecutionResult, OutputCallback
from .kernel import MAX_STREAM_CHARS
from .parity import RESULT_NAME as PARITY_RESULT_NAME
from .parity import ParityRun

T = TypeVar("T")

INTERRUPT_GRACE_SECONDS = 10.0
"""A block still running this long after its interrupt is interrupted again."""
CANCEL_GRACE_SECONDS = 5.0
"""How long a cancelled ``execute`` waits for the interrupted block to hand back its outputs."""

_MISSING = object()


class ShellThreadClosed(ExecutionFailure):
    """The shell's thread stopped taking work (the run it served has ended)."""


class ShellThreadQueue:
    """Calls other threads hand to the thread that owns the IPython shell.

    Create it on the shell's thread; that thread runs the calls when it ``pump``\\ s.
    """

    def __init__(self) -> None:
        self.thread_id = threading.get_ident()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any] | None]] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._closing = threading.Lock()  # no call may slip in after close() drained

    def post(self, call: Callable[[], Any]) -> None:
        """Run ``call`` on the shell's thread; nobody waits for it."""
        with self._closing:
            if not self._closed:
                self._calls.put((call, None))

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``call`` on the shell's thread; the future holds what it returns or raises.

        A ``KeyboardInterrupt`` in ``call`` (Ctrl-C) becomes the future's exception
        ``KeyboardInterruptInCall`` and is raised on in the shell's thread as well.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._closing:
            if not self._closed:
                self._calls.put((call, future))
                return future
        future.set_exception(ShellThreadClosed("the run has ended"))
        return future

    def pump(self, timeout: float, before_submitted: Callable[[], None] | None = None) -> bool:
        """Run the waiting calls, waiting up to ``timeout`` seconds for the first one.

        ``before_submitted`` runs before each call someone waits for (a code block, a
        prompt): the magic brings its display up to date there. Returns False when no
        call came. Must be called on the shell's thread.
        """
        try:
            item = self._calls.get(timeout=timeout)
        except queue.Empty:
            return False
        while True:
            if item[1] is not None and before_submitted is not None:
                before_submitted()
            self._run(*item)
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                return True

    def close(self) -> None:
        """Take no more calls; waiting ones are dropped and their futures cancelled."""
        with self._closing:
            self._closed = True
        while True:
            try:
                _, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if future is not None:
                future.cancel()

    @staticmethod
    def _run(call: Callable[[], Any], future: concurrent.futures.Future[Any] | None) -> None:
        if future is None:
            call()
            return
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = call()
        except KeyboardInterrupt:
            future.set_exception(KeyboardInterruptInCall())
            raise
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


class KeyboardInterruptInCall(Exception):
    """Ctrl-C interrupted a call handed to the shell's thread."""


@contextlib.contextmanager
def keyboard_interrupts() -> Iterator[None]:
    """On the main thread: SIGINT raises ``KeyboardInterrupt`` (Python's default) meanwhile.

    ipykernel installs that handler while it runs a cell, but not for cells with a
    top-level ``await``; the interrupts of this module rely on it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def raise_keyboard_interrupt(thread_id: int) -> None:
    """Make ``thread_id`` raise ``KeyboardInterrupt`` as soon as it can.

    The main thread gets a real ``SIGINT`` (if a Python handler is installed), which
    also wakes it from blocking calls; another thread gets an asynchronous exception,
    delivered at its next bytecode.
    """
    main = threading.main_thread().ident
    if thread_id == main and callable(signal.getsignal(signal.SIGINT)):
        if hasattr(signal, "pthread_kill"):
            signal.pthread_kill(thread_id, signal.SIGINT)
        else:  # Windows: no per-thread signals; blocking calls finish first
            _thread.interrupt_main()
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(KeyboardInterrupt))


# ---------------------------------------------------------------------------- capture


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


class _CapturedStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` while a block runs."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, capture: _Capture, name: str) -> None:
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


def _display_publisher(capture: _Capture, shell: Any) -> Any:
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

    def __init__(self, capture: _Capture, shell: Any, code: str) -> None:
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


class _Capture:
    """Everything one block shows, in order, as nbformat outputs."""

    def __init__(self, shell: Any, code: str, max_stream_chars: int) -> None:
        self.shell = shell
        self.outputs: list[Output] = []
        self.errors: list[ExecutionError] = []
        self._max_stream_chars = max_stream_chars
        self._stream_chars = 0
        self._dropped = 0
        self._clear_pending = False
        self._display_index: dict[str, int] = {}
        self._lock = threading.Lock()  # threads the block starts may print too
        self._stdout = _CapturedStream(self, "stdout")
        self._stderr = _CapturedStream(self, "stderr")
        self._display_pub = _display_publisher(self, shell)
        self._displayhook = _CapturingDisplayHook(self, shell, code)
        self._saved: list[tuple[Any, str, Any]] = []

    # -- what the block shows

    def _append(self, output: Output) -> None:
        if self._clear_pending:
            self._clear_now()
        append_output(self.outputs, output)

    def _clear_now(self) -> None:
        self.outputs.clear()
        self._display_index.clear()
        self._clear_pending = False

    def stream(self, name: str, text: str) -> None:
        with self._lock:
            room = self._max_stream_chars - self._stream_chars
            if len(text) > room:
                self._dropped += len(text) - max(room, 0)
                text = text[: max(room, 0)]
            if text:
                self._stream_chars += len(text)
                self._append({"output_type": "stream", "name": name, "text": text})

    def display(
        self, data: Mapping[str, Any], metadata: Mapping[str, Any], transient: Mapping[str, Any], update: bool
    ) -> None:
        output = {
            "output_type": "display_data",
            "data": _clean_bundle(data),
            "metadata": _clean_bundle(metadata),
        }
        display_id = transient.get("display_id")
        with self._lock:
            if update:  # only displays of this block can be updated; others are not ours
                index = self._display_index.get(display_id) if display_id else None
                if index is not None and index < len(self.outputs):
                    self.outputs[index] = output
                return
            self._append(output)
            if display_id:
                self._display_index[str(display_id)] = len(self.outputs) - 1

    def result(self, data: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        output = {
            "output_type": "execute_result",
            "data": _clean_bundle(data),
            "metadata": _clean_bundle(metadata),
            # Not a history entry of the shell (store_history=False): no count.
            "execution_count": None,
        }
        with self._lock:
            self._append(output)

    def clear(self, wait: bool) -> None:
        with self._lock:
            if wait:
                self._clear_pending = True
            else:
                self._clear_now()

    def traceback(self, etype: type[BaseException], evalue: BaseException, stb: list[str]) -> None:
        """Replaces the shell's ``_showtraceback``: the kernel's ``error`` output, kept here."""
        error = ExecutionError(etype.__name__, str(evalue), tuple(stb))
        with self._lock:
            self.errors.append(error)
            self._append(
                {"output_type": "error", "ename": error.ename, "evalue": error.evalue, "traceback": list(stb)}
            )

    def figure(self, png: bytes, text: str) -> None:
        data = {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}
        with self._lock:
            self._append({"output_type": "display_data", "data": data, "metadata": {}})

    def finish(self) -> list[Output]:
        with self._lock:
            if self._dropped:
                self._append(dropped_stream_note(self._dropped))
                self._dropped = 0
            return self.outputs

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


def _to_completion(step: Callable[[], None]) -> bool:
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


def _open_figures() -> dict[int, Any]:
    """Open matplotlib figures by number (empty when pyplot was never imported)."""
    helpers = sys.modules.get("matplotlib._pylab_helpers")
    if helpers is None or "matplotlib.pyplot" not in sys.modules:
        return {}
    return {manager.num: manager.canvas.figure for manager in helpers.Gcf.get_all_fig_managers()}


def _capture_new_figures(capture: _Capture, before: Mapping[int, Any]) -> None:
    """With a non-inline backend, figures the block left open become PNG outputs and are closed.

    The inline backend shows (and, unless configured not to, closes) a block's figures
    itself at ``post_execute``, which runs inside the capture; it is left alone. Other
    backends would leave them open, unseen, or shown loose later.
    """
    figures = {num: fig for num, fig in _open_figures().items() if before.get(num) is not fig}
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


# --------------------------------------------------------------------------- executor


@dataclass
class _Block:
    """The block running now, and why it was interrupted (None: not by this executor)."""

    thread_id: int
    reason: str | None = None
    finished: bool = False


class InProcessExecutor:
    """Executes code blocks in an IPython shell's namespace, one at a time.

    ``queue`` carries blocks to the shell's thread when ``execute`` is awaited on another
    thread. ``on_interrupt`` is called on the shell's thread when the user interrupts a
    block (a ``KeyboardInterrupt`` this executor did not send).
    """

    def __init__(
        self,
        shell: Any,
        *,
        queue: ShellThreadQueue | None = None,
        feedback: FeedbackOptions | None = None,
        max_stream_chars: int = MAX_STREAM_CHARS,
        on_interrupt: Callable[[], None] | None = None,
        interrupt_grace: float = INTERRUPT_GRACE_SECONDS,
    ) -> None:
        self.shell = shell
        self.queue = queue
        self.thread_id = queue.thread_id if queue is not None else threading.get_ident()
        self.feedback = feedback or FeedbackOptions()
        self.max_stream_chars = max_stream_chars
        self.on_interrupt = on_interrupt
        self.interrupt_grace = interrupt_grace
        self._state = threading.Lock()
        self._block: _Block | None = None
        # Blocks run one at a time; the lock belongs to the loop that awaits execute().
        self._serial: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    # ------------------------------------------------------------------ the surface

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``code`` in the shell's namespace, not stored in its history.

        Returns status ``ok``, ``error``, ``timeout`` or ``interrupted``. If the calling
        task is cancelled while the block runs, the block is interrupted and its outputs
        are still passed to ``on_output`` before the cancellation propagates.
        """
        loop = asyncio.get_running_loop()
        if self._serial is None or self._serial[0] is not loop:
            self._serial = (loop, asyncio.Lock())
        async with self._serial[1]:
            if threading.get_ident() == self.thread_id:
                result = self.run_block(code, timeout)
            else:
                result = await self._execute_on_shell_thread(code, timeout, on_output)
            await _forward(result.outputs, on_output)
            return result

    async def interrupt(self) -> None:
        """Interrupt the block running now (``KeyboardInterrupt`` in it); it ends ``interrupted``."""
        self._interrupt("interrupt")

    # ------------------------------------------------------------------ internals

    async def _execute_on_shell_thread(
        self, code: str, timeout: float | None, on_output: OutputCallback | None
    ) -> ExecutionResult:
        if self.queue is None:
            raise ExecutionFailure("InProcessExecutor was awaited off the shell's thread without a queue")
        # Let the agent's event consumer hand the code cell to the display first: the
        # user sees what runs before the shell's thread is busy running it.
        await asyncio.sleep(0)
        future = self.queue.submit(lambda: self.run_block(code, timeout))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # Cancelled while the block runs: stop it. (After a user interrupt the block
            # has already ended and this does nothing.)
            self._interrupt("cancel")
            done, _ = await asyncio.wait({asyncio.wrap_future(future)}, timeout=CANCEL_GRACE_SECONDS)
            if done and not future.cancelled() and future.exception() is None:
                await _forward(future.result().outputs, on_output)
            raise

    def _interrupt(self, reason: str) -> None:
        with self._state:
            block = self._block
            if block is None or block.finished:
                return
            if block.reason is None:
                block.reason = reason
            raise_keyboard_interrupt(block.thread_id)

    def _watch(self, block: _Block, timeout: float, stop: threading.Event) -> None:
        """Timer thread: interrupt the block at its deadline, then again every grace period."""
        wait = timeout
        while not stop.wait(wait):
            self._interrupt("timeout")
            wait = self.interrupt_grace

    def run_block(self, code: str, timeout: float | None = None) -> ExecutionResult:
        """Run ``code`` now, on the shell's thread; the synchronous heart of ``execute``."""
        if threading.get_ident() != self.thread_id:
            raise ExecutionFailure("run_block must run on the shell's thread")
        started = time.monotonic()
        capture = _Capture(self.shell, code, self.max_stream_chars)
        block = _Block(threading.get_ident())
        stop = threading.Event()
        escaped: BaseException | None = None
        run: Any = None
        with self._state:
            self._block = block
        try:
            with keyboard_interrupts():
                try:
                    before = _open_figures()
                    capture.install()
                    if timeout:
                        threading.Thread(
                            target=self._watch,
                            args=(block, timeout, stop),
                            name="deepanalyze-timeout",
                            daemon=True,
                        ).start()
                    # store_history=False: the user's In/Out, `_` and execution counter stay
                    # the user's, and ipykernel, which numbers the magic's own cell from the
                    # counter when it finishes, keeps numbering it right.
                    source = ParityRun(code).source if self.feedback.parity else code
                    run = self.shell.run_cell(source, store_history=False, silent=False)
                    _capture_new_figures(capture, before)
                finally:
                    # An interrupt sent just before the block ended may land in here.
                    late = _to_completion(stop.set)
                    late |= _to_completion(lambda: self._finish(block))
                    late |= _to_completion(capture.restore)
                    if late:
                        escaped = KeyboardInterrupt()
        except KeyboardInterrupt as exc:  # landed outside the block's code (in IPython or here)
            escaped = exc
        return self._result(code, timeout, capture, block, run, escaped, time.monotonic() - started)

    def _finish(self, block: _Block) -> None:
        with self._state:
            block.finished = True
            self._block = None

    def _result(
        self,
        code: str,
        timeout: float | None,
        capture: _Capture,
        block: _Block,
        run: Any,
        escaped: BaseException | None,
        duration: float,
    ) -> ExecutionResult:
        raised = escaped
        if run is not None and raised is None:
            raised = run.error_in_exec or run.error_before_exec
        interrupted = isinstance(raised, KeyboardInterrupt)
        outputs = capture.finish()
        error = capture.errors[0] if capture.errors else None
        if error is None and raised is not None:
            # Left no traceback (interrupted outside the code, or e.g. bdb.BdbQuit).
            error = ExecutionError(type(raised).__name__, str(raised), (type(raised).__name__,))
            append_output(
                outputs,
                {
                    "output_type": "error",
                    "ename": error.ename,
                    "evalue": error.evalue,
                    "traceback": list(error.traceback),
                },
            )
        timed_out = block.reason == "timeout"
        if timed_out:
            status = "timeout"
        elif interrupted:
            status = "interrupted"
        else:
            status = "error" if error is not None else "ok"
        if interrupted and block.reason is None and self.on_interrupt is not None:
            self.on_interrupt()
        if error is not None:
            error = ExecutionError(error.ename, strip_ansi(error.evalue), error.traceback)
        feedback = format_feedback(
            code, outputs, error=error, timeout=timeout if timed_out else None, options=self.feedback
        )
        result = ExecutionResult(
            status=status,
            outputs=outputs,
            execution_count=None,
            feedback=feedback,
            error=error,
            duration=duration,
        )
        if self.feedback.parity:
            value = self.shell.user_ns.pop(PARITY_RESULT_NAME, None)
            return ParityRun(code).result(result, value if isinstance(value, dict) else None)
        return result


async def _forward(outputs: list[Output], on_output: OutputCallback | None) -> None:
    if on_output is None:
        return
    for output in outputs:
        result = on_output(output)
        if inspect.isawaitable(result):
            await result


__all__ = [
    "InProcessExecutor",
    "KeyboardInterruptInCall",
    "ShellThreadClosed",
    "ShellThreadQueue",
    "keyboard_interrupts",
    "raise_keyboard_interrupt",
]
