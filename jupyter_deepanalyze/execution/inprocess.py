"""``InProcessExecutor``: run the model's code in the calling IPython shell (the magic).

Owns executing a code block with ``shell.run_cell`` in the user's own namespace, on the
thread that owns the shell (``capture.BlockCapture`` collects what it shows), its status,
and the model's feedback from ``feedback.format_feedback`` on the outputs the block ends
with, as for ``KernelExecutor``.

Threads: the agent's asyncio loop runs on another thread (the shell's own loop, if any,
is busy running the magic). ``execute`` hands each block to the shell's thread through
a ``ShellThreadQueue`` that the magic pumps; awaited on the shell's thread itself it runs
the block inline, as a kernel would. The block's output changes reach ``on_output`` when
it ends (the shell's thread cannot serve the agent's loop while the block runs).

Timeouts and interrupts: in-process code cannot be pre-empted safely, so a timeout (or
``interrupt()``) raises ``KeyboardInterrupt`` in the shell's thread, as Ctrl-C would
(``shell_thread.raise_keyboard_interrupt``). Code that swallows ``KeyboardInterrupt`` is
poked again every ``INTERRUPT_GRACE_SECONDS`` but cannot be forced to stop. A
``KeyboardInterrupt`` this executor did not send is the user's (the Stop button): the
block ends ``interrupted`` and ``on_interrupt`` is called.

Must not leave anything swapped around a block, even when an interrupt lands while the
hooks are restored.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import default_feedback_options
from ..feedback import ExecutionError, FeedbackOptions, format_feedback, strip_ansi
from ..outputs import OutputChange, OutputSync
from . import ExecutionFailure, ExecutionResult, OutputCallback
from .capture import BlockCapture, capture_new_figures, open_figures, to_completion
from .kernel import MAX_STREAM_CHARS
from .parity import RESULT_NAME as PARITY_RESULT_NAME
from .parity import ParityRun
from .shell_thread import (
    KeyboardInterruptInCall,
    ShellThreadClosed,
    ShellThreadQueue,
    keyboard_interrupts,
    raise_keyboard_interrupt,
)
from .snapshots import FolderSnapshot, snapshot_here

INTERRUPT_GRACE_SECONDS = 10.0
"""A block still running this long after its interrupt is interrupted again."""
CANCEL_GRACE_SECONDS = 5.0
"""How long a cancelled ``execute`` waits for the interrupted block to hand back its outputs."""


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
        self.feedback = feedback or default_feedback_options()
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
                result, changes = self._run_block(code, timeout)
            else:
                result, changes = await self._execute_on_shell_thread(code, timeout, on_output)
            await _forward(changes, on_output)
            return result

    async def interrupt(self) -> None:
        """Interrupt the block running now (``KeyboardInterrupt`` in it); it ends ``interrupted``."""
        self._interrupt("interrupt")

    async def snapshot_files(self, folder: str | None = None) -> FolderSnapshot | None:
        """The files under ``folder`` (this process's working directory by default)."""
        try:
            return await asyncio.to_thread(snapshot_here, folder)
        except OSError:  # the working directory was removed
            return None

    # ------------------------------------------------------------------ internals

    async def _execute_on_shell_thread(
        self, code: str, timeout: float | None, on_output: OutputCallback | None
    ) -> tuple[ExecutionResult, list[OutputChange]]:
        if self.queue is None:
            raise ExecutionFailure("InProcessExecutor was awaited off the shell's thread without a queue")
        # Let the agent's event consumer hand the code cell to the display first: the
        # user sees what runs before the shell's thread is busy running it.
        await asyncio.sleep(0)
        future = self.queue.submit(lambda: self._run_block(code, timeout))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # Cancelled while the block runs: stop it. (After a user interrupt the block
            # has already ended and this does nothing.)
            self._interrupt("cancel")
            done, _ = await asyncio.wait({asyncio.wrap_future(future)}, timeout=CANCEL_GRACE_SECONDS)
            if done and not future.cancelled() and future.exception() is None:
                await _forward(future.result()[1], on_output)
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
        return self._run_block(code, timeout)[0]

    def _run_block(self, code: str, timeout: float | None) -> tuple[ExecutionResult, list[OutputChange]]:
        """The block's result and the output changes the sinks are to be sent."""
        if threading.get_ident() != self.thread_id:
            raise ExecutionFailure("run_block must run on the shell's thread")
        started = time.monotonic()
        capture = BlockCapture(self.shell, code, self.max_stream_chars)
        block = _Block(threading.get_ident())
        stop = threading.Event()
        escaped: BaseException | None = None
        run: Any = None
        with self._state:
            self._block = block
        try:
            with keyboard_interrupts():
                try:
                    before = open_figures()
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
                    capture_new_figures(capture, before)
                finally:
                    # An interrupt sent just before the block ended may land in here.
                    late = to_completion(stop.set)
                    late |= to_completion(lambda: self._finish(block))
                    late |= to_completion(capture.restore)
                    if late:
                        escaped = KeyboardInterrupt()
        except KeyboardInterrupt as exc:  # landed outside the block's code (in IPython or here)
            escaped = exc
        result = self._result(code, timeout, capture, block, run, escaped, time.monotonic() - started)
        return result, OutputSync(capture.outputs).changes()

    def _finish(self, block: _Block) -> None:
        with self._state:
            block.finished = True
            self._block = None

    def _result(
        self,
        code: str,
        timeout: float | None,
        capture: BlockCapture,
        block: _Block,
        run: Any,
        escaped: BaseException | None,
        duration: float,
    ) -> ExecutionResult:
        raised = escaped
        if run is not None and raised is None:
            raised = run.error_in_exec or run.error_before_exec
        parity = ParityRun(code) if self.feedback.parity else None
        parity_value = None
        if parity is not None:
            value = self.shell.user_ns.pop(PARITY_RESULT_NAME, None)
            parity_value = value if isinstance(value, dict) else None
            if (shown := parity.error_output(parity_value)) is not None:
                capture.handle("error", shown)  # the block's own error, in the cell
        interrupted = isinstance(raised, KeyboardInterrupt)
        errors = capture.errors
        error = errors[0] if errors else None
        if error is None and raised is not None:
            # Left no traceback (interrupted outside the code, or e.g. bdb.BdbQuit).
            name = type(raised).__name__
            capture.handle("error", {"ename": name, "evalue": str(raised), "traceback": [name]})
            error = capture.errors[0]
        outputs = capture.finish()
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
        return parity.result(result, parity_value) if parity else result


async def _forward(changes: list[OutputChange], on_output: OutputCallback | None) -> None:
    if on_output is None:
        return
    for change in changes:
        result = on_output(change)
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
