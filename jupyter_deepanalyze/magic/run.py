"""One run of the agent from ``%analyze``, on the user's own namespace, shown live.

Owns ``run_analysis`` (the task from the magic's line — or a follow-up continuing an
earlier result's conversation, ``AnalysisResult.ask`` and ``%analyze --continue`` — the
run, the ``AnalysisResult``) and ``MagicRun``, the run's two threads. The agent's asyncio loop runs on a worker
thread (the kernel's own loop is busy: it is running this magic). The shell's thread —
the one that called the magic — runs every code block the model writes
(``InProcessExecutor`` hands them over through a ``ShellThreadQueue``) and draws the
display, because ipykernel ties displays and outputs to the cell that thread is running.
Between those calls it waits with a short timeout, so Ctrl-C (or the Stop button) always
lands there: it cancels the agent (remembered if the agent has not begun), which stops
the model stream, and the run ends ``cancelled`` with no traceback.

Must not block without a way to interrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError

from ..agent import Agent, Approval, Task
from ..config import DeepAnalyze
from ..conversation import Conversation
from ..events import Event
from ..execution.inprocess import (
    InProcessExecutor,
    KeyboardInterruptInCall,
    ShellThreadClosed,
    ShellThreadQueue,
    keyboard_interrupts,
)
from ..llm import ModelError
from ..llm.registry import open_model
from ..recorder import RunRecorder
from ..workspace import DataListing
from .line import MagicArguments, describe_variables, working_directory_files
from .result import AnalysisResult, forget_after_cell
from .views import LiveDisplay, TextProgress

log = logging.getLogger(__name__)

PUMP_SECONDS = 0.1
"""The shell's thread wakes this often while it waits (how soon Ctrl-C is noticed at worst)."""
STOP_WAIT_SECONDS = 10.0
"""After Stop, how long the run may take to wind down before the magic stops waiting."""


class MagicRun:
    """One run of the agent from a magic: see the module docstring for the threads."""

    def __init__(
        self, shell: Any, settings: DeepAnalyze, spec: str | None, task: Task, approve: bool, view: Any
    ) -> None:
        self.shell = shell
        self.settings = settings
        self.spec = spec
        self.task = task
        self.approve = approve
        self.view = view
        self.queue = ShellThreadQueue()
        self.events: list[Event] = []
        self.recorder = RunRecorder(notebook=False)
        self.model_error: str | None = None
        self.failure: BaseException | None = None
        self.conversation: Conversation | None = None
        self._done = False
        self._stop_requested = False
        self._give_up_at: float | None = None
        # Touched on the worker's loop only:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Task[Any] | None = None
        self._agent: Agent | None = None

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    # -- the shell's thread

    def run(self) -> None:
        worker = threading.Thread(target=self._worker, name="deepanalyze-agent", daemon=True)
        with keyboard_interrupts():
            worker.start()
            while not self._done:
                try:
                    # The display is brought up to date before each code block runs:
                    # the shell's thread cannot redraw it while the block runs.
                    self.queue.pump(PUMP_SECONDS, before_submitted=self._redraw)
                    self.view.flush()
                except KeyboardInterrupt:
                    if self._stop_requested:
                        break  # Ctrl-C again: stop waiting for the run to wind down
                    self.request_stop()
                except Exception:  # a display that failed to draw must not orphan the run
                    log.exception("%analyze: the display failed")
                if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                    break
            self.queue.close()
            with contextlib.suppress(KeyboardInterrupt):
                self.view.close()
                worker.join(timeout=1.0)

    def request_stop(self) -> None:
        """The user interrupted: cancel the agent (from the shell's thread)."""
        if self._stop_requested:
            return
        self._stop_requested = True
        self._give_up_at = time.monotonic() + STOP_WAIT_SECONDS
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(self._cancel)
        if self.view.shown:
            self.view.stopping()

    def _redraw(self) -> None:
        self.view.flush(force=True)

    def _show(self, event: Event) -> None:
        self.events.append(event)
        self.recorder.apply(event)
        self.view.show(event)

    def _finish(self) -> None:
        self._done = True

    def _ask(self, cell_id: str, code: str) -> Approval:
        """``--approve``: ask the user about one code block (shown above the prompt)."""
        while True:
            try:
                answer = input("Run this code? [Enter/y] run, [s] skip, [q] stop: ")
            except (StdinNotImplementedError, EOFError):
                print("%analyze --approve: this frontend cannot answer prompts; the run stops.")
                self.request_stop()
                return Approval("skip")
            choice = answer.strip().lower()
            if choice in ("", "y", "yes", "r", "run"):
                return Approval("run")
            if choice in ("s", "skip", "n", "no"):
                return Approval("skip")
            if choice in ("q", "quit", "stop"):
                self.request_stop()
                return Approval("skip")

    # -- the worker thread

    def _worker(self) -> None:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            # Ctrl-C must reach the shell's thread, never this one.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            asyncio.run(self._work())
        except BaseException as exc:  # reported on the shell's thread as one line
            log.debug("%analyze worker failed", exc_info=True)
            self.failure = exc
        finally:
            self.queue.post(self._finish)

    def _cancel(self) -> None:
        if self._agent is not None:
            self._agent.cancel()  # before its run began, the agent remembers it
        elif self._opening is not None:
            self._opening.cancel()

    async def _work(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._stop_requested:
            return
        self._opening = asyncio.ensure_future(open_model(self.settings, self.spec))
        try:
            model = await self._opening
        except ModelError as exc:
            self.model_error = str(exc)
            return
        except asyncio.CancelledError:
            return
        try:
            executor = InProcessExecutor(
                self.shell,
                queue=self.queue,
                feedback=self.settings.feedback_options(),
                on_interrupt=self.request_stop,
            )
            self._agent = Agent.from_config(
                self.settings, model, executor, approval=self._approval if self.approve else None
            )
            if self._stop_requested:  # stopped while the model was opening
                self._agent.cancel()
            async for event in self._agent.run(self.task):
                self.queue.post(functools.partial(self._show, event))
            self.conversation = self._agent.conversation()
        finally:
            with contextlib.suppress(Exception):
                await model.aclose()

    async def _approval(self, cell_id: str, code: str) -> Approval:
        # Let the approval_required event reach the display before the prompt.
        await asyncio.sleep(0)
        future = self.queue.submit(functools.partial(self._ask, cell_id, code))
        try:
            return await asyncio.wrap_future(future)
        except (KeyboardInterruptInCall, ShellThreadClosed):
            raise asyncio.CancelledError from None


def run_analysis(
    shell: Any,
    settings: DeepAnalyze,
    arguments: MagicArguments,
    *,
    view: Any = None,
    follows: AnalysisResult | None = None,
    ask: Callable[[AnalysisResult, MagicArguments], AnalysisResult | None] | None = None,
) -> AnalysisResult | None:
    """Run the agent on ``arguments`` in ``shell``'s namespace, showing it live; with
    ``follows``, as a follow-up continuing that result's conversation. ``ask`` is what the
    result's ``ask()`` calls."""
    if not arguments.variables and arguments.question in shell.user_ns and arguments.question.isidentifier():
        raise UsageError(f'%analyze needs a question after the variables: %analyze {arguments.question} "…"')
    conversation = None
    if follows is not None:
        conversation = follows.conversation
        if conversation is None:
            raise UsageError(f"%analyze: run {follows.run_id} ended before the model was asked: nothing to continue")
    variables = describe_variables(shell.user_ns, arguments.variables)
    listing = DataListing([]) if variables else working_directory_files()
    task = Task(arguments.question, listing.files, variables, listing.more, follows=conversation)
    if arguments.max_rounds is not None:
        try:
            settings.max_rounds = arguments.max_rounds
        except Exception as exc:  # traitlets validation
            raise UsageError(f"%analyze: --max-rounds: {exc}") from None
    if arguments.model:  # this run's model, as the CLI's --model: DeepAnalyze.model's key is its own
        settings.model = arguments.model
    if view is None:
        view = LiveDisplay() if getattr(shell, "kernel", None) is not None else TextProgress()
    run = MagicRun(shell, settings, None, task, arguments.approve, view)
    run.run()
    if run.model_error is not None:
        raise UsageError(f"%analyze: {run.model_error}")
    if run.failure is not None:
        message = f"%analyze failed: {type(run.failure).__name__}: {run.failure}"
        if not run.events:
            raise UsageError(message)
        print(message, file=sys.stderr)
    if not run.events:
        print("%analyze: stopped before the run started.")
        return None
    outcome = run.recorder.outcome
    if outcome.status is not None:
        status, error = outcome.status, outcome.error
    else:  # stopped waiting for a run that did not wind down
        status, error = ("cancelled", None) if run.stop_requested else ("failed", str(run.failure or ""))
    result = AnalysisResult(
        run_id=run.events[0].run_id,
        question=arguments.question,
        status=status,
        events=[event.to_json() for event in run.events],
        error=error,
        report=outcome.report,
        files=outcome.files,
        parent_run_id=outcome.parent_run_id,
        variables=arguments.variables,
        conversation=run.conversation,
        _follow_up=ask,
        _shown_in_cell=view.shown,
    )
    if result._shown_in_cell:
        forget_after_cell(shell, result)
    return result

