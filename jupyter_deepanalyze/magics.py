"""``%analyze`` and ``%%analyze``: the DeepAnalyze agent on the user's own namespace.

Owns ``load_ipython_extension`` (the magics, and a ``DeepAnalyze`` configurable the
``%config`` magic can set), reading a magic line, one run of the agent from a magic,
and ``AnalysisResult``, what the magic returns.

A run has two threads. The agent's asyncio loop runs on a worker thread (the kernel's
own loop is busy: it is running this magic). The shell's thread — the one that called
the magic — runs every code block the model writes (``InProcessExecutor`` hands them
over through a ``ShellThreadQueue``) and draws the display, because ipykernel ties
displays and outputs to the cell that thread is running. Between those calls it waits
with a short timeout, so Ctrl-C (or the Stop button) always lands there: it cancels the
agent, which stops the model stream, and the run ends ``cancelled`` with no traceback.

Must not block without a way to interrupt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from .agent import Agent, Approval, Task
from .config import DeepAnalyze
from .events import Event, RunFinished
from .execution.inprocess import (
    InProcessExecutor,
    KeyboardInterruptInCall,
    ShellThreadClosed,
    ShellThreadQueue,
    keyboard_interrupts,
)
from .llm import ModelError
from .llm.registry import open_model
from .notebook import events_to_notebook
from .protocol import DataFile, VariableInfo
from .run_display import LiveDisplay, RunDocument, TextProgress, run_bundle
from .variables import describe_value, type_name
from .workspace import list_data_files

log = logging.getLogger(__name__)

PUMP_SECONDS = 0.1
"""The shell's thread wakes this often while it waits (how soon Ctrl-C is noticed at worst)."""
STOP_WAIT_SECONDS = 10.0
"""After Stop, how long the run may take to wind down before the magic stops waiting."""

USAGE = """\
%analyze [VARIABLE ...] "QUESTION" [--model SPEC] [--max-rounds N] [--approve]
%%analyze [VARIABLE ...] [--model SPEC] [--max-rounds N] [--approve]
QUESTION (the cell body)"""


# ------------------------------------------------------------------------ the line


@dataclass(frozen=True)
class MagicArguments:
    """A magic line, read: the variables to analyze, the question and the options."""

    variables: tuple[str, ...]
    question: str
    model: str | None = None
    max_rounds: int | None = None
    approve: bool = False


class _HelpShown(Exception):
    pass


class _LineParser(argparse.ArgumentParser):
    """argparse that reports a bad line as one ``UsageError`` line instead of exiting."""

    def error(self, message: str) -> Any:
        raise UsageError(f"%analyze: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            raise UsageError(f"%analyze: {message.strip()}")
        raise _HelpShown


def _line_parser() -> _LineParser:
    parser = _LineParser(prog="%analyze", usage=USAGE, add_help=True)
    parser.add_argument("words", nargs="*", help="variable names, then the question (quoted)")
    parser.add_argument(
        "--model",
        metavar="SPEC",
        help="model spec (default: the DeepAnalyze config, else $DEEPANALYZE_MODEL)",
    )
    parser.add_argument("--max-rounds", type=int, metavar="N", help="most model turns (default 30)")
    parser.add_argument("--approve", action="store_true", help="ask before running each code block")
    return parser


def parse_magic_line(line: str, cell: str | None = None) -> MagicArguments | None:
    """Read ``%analyze df "question" …`` (``cell`` None) or ``%%analyze df …`` + its body.

    Returns None when only ``--help`` was asked for. Raises ``UsageError`` (one line).
    """
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%analyze: cannot read the line ({exc}); quote the question") from None
    try:
        options = _line_parser().parse_intermixed_args(words)
    except _HelpShown:
        return None
    names: list[str] = list(options.words)
    if cell is None:
        if not names:
            raise UsageError('%analyze needs a question, e.g. %analyze df "What drives churn?"')
        question = names.pop()
    else:
        question = cell
    if not question.strip():
        raise UsageError(
            "%analyze: the question is empty" + ("" if cell is None else " (it is the cell body)")
        )
    for name in names:
        if not name.isidentifier():
            raise UsageError(f"%analyze: {name!r} is not a variable name; quote the question")
    return MagicArguments(tuple(names), question.strip(), options.model, options.max_rounds, options.approve)


def describe_variables(namespace: dict[str, Any], names: Sequence[str]) -> list[VariableInfo]:
    """``VariableInfo`` for each named variable; ``UsageError`` names the first unknown one."""
    described: list[VariableInfo] = []
    for name in names:
        if name not in namespace:
            raise UsageError(
                f"%analyze: no variable named {name!r} (quote the question if it has several words)"
            )
        value = namespace[name]
        described.append(describe_value(name, value) or VariableInfo(name, type_name(value)))
    return described


def working_directory_files(folder: Path | None = None) -> list[DataFile]:
    """The data files directly in ``folder`` (default: the cwd): not hidden, not notebooks."""
    folder = folder or Path.cwd()
    try:
        names = sorted(
            path.name
            for path in folder.iterdir()
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".ipynb"
        )
    except OSError:
        return []
    return list_data_files(folder, names)


# ---------------------------------------------------------------------- the result


@dataclass
class AnalysisResult:
    """What ``%analyze`` returns: the run's events, its status and its report."""

    run_id: str
    question: str
    status: str
    events: list[dict[str, Any]] = field(repr=False)
    error: str | None = None
    # True while the magic's own cell, which already shows the run live, is running:
    # displaying the result there again (as the cell's value) would show it twice.
    _shown_in_cell: bool = field(default=False, repr=False, compare=False)

    @property
    def report(self) -> str:
        """The final answer (Markdown); empty when the run ended without one."""
        for event in self.events:
            if (
                event.get("type") == "cell"
                and event.get("metadata", {}).get("deepanalyze", {}).get("role") == "report"
            ):
                return str(event["source"])
        return ""

    def to_notebook(self) -> Any:
        """The run as an nbformat notebook (the core's ``NotebookBuilder``)."""
        return events_to_notebook(self.events)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return run_bundle(RunDocument.from_events(self.events))

    def _repr_markdown_(self) -> str:
        return self.report or f"*DeepAnalyze run {self.status}; no report.*"

    def _ipython_display_(self) -> None:
        if self._shown_in_cell:
            return
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)

    def __repr__(self) -> str:
        blocks = sum(1 for e in self.events if e.get("type") == "cell" and e.get("cell_type") == "code")
        return (
            f"<AnalysisResult {self.status}: {blocks} code blocks, report of {len(self.report)} "
            f"characters; run {self.run_id}>"
        )


# ------------------------------------------------------------------------- the run


class _Run:
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
        self.model_error: str | None = None
        self.failure: BaseException | None = None
        self._done = False
        self._stop_requested = False
        self._give_up_at: float | None = None
        # Touched on the worker's loop only:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Task[Any] | None = None
        self._agent: Agent | None = None
        self._agent_running = False
        self._cancel_sent = False

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
        if self._cancel_sent:
            return
        if self._agent is not None and self._agent_running:
            self._agent.cancel()
            self._cancel_sent = True
        elif self._agent is None and self._opening is not None:
            self._opening.cancel()
            self._cancel_sent = True

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
            settings = self.settings
            executor = InProcessExecutor(
                self.shell,
                queue=self.queue,
                feedback=settings.feedback_options(),
                on_interrupt=self.request_stop,
            )
            self._agent = Agent.from_config(
                settings, model, executor, approval=self._approval if self.approve else None
            )
            async for event in self._agent.run(self.task):
                self._agent_running = True
                if self._stop_requested:
                    self._cancel()
                self.queue.post(functools.partial(self._show, event))
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
    shell: Any, settings: DeepAnalyze, arguments: MagicArguments, *, view: Any = None
) -> AnalysisResult | None:
    """Run the agent on ``arguments`` in ``shell``'s namespace, showing it live."""
    if not arguments.variables and arguments.question in shell.user_ns and arguments.question.isidentifier():
        raise UsageError(f'%analyze needs a question after the variables: %analyze {arguments.question} "…"')
    variables = describe_variables(shell.user_ns, arguments.variables)
    files = [] if variables else working_directory_files()
    task = Task(arguments.question, files, variables)
    if arguments.max_rounds is not None:
        try:
            settings.max_rounds = arguments.max_rounds
        except Exception as exc:  # traitlets validation
            raise UsageError(f"%analyze: --max-rounds: {exc}") from None
    if view is None:
        view = LiveDisplay() if getattr(shell, "kernel", None) is not None else TextProgress()
    run = _Run(shell, settings, arguments.model, task, arguments.approve, view)
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
    finished = next((e for e in reversed(run.events) if isinstance(e, RunFinished)), None)
    if finished is not None:
        status, error = finished.status, finished.error
    else:  # stopped waiting for a run that did not wind down
        status, error = ("cancelled", None) if run._stop_requested else ("failed", str(run.failure or ""))
    result = AnalysisResult(
        run_id=run.events[0].run_id,
        question=arguments.question,
        status=status,
        events=[event.to_json() for event in run.events],
        error=error,
        _shown_in_cell=view.shown,
    )
    if result._shown_in_cell:
        _forget_after_cell(shell, result)
    return result


def _forget_after_cell(shell: Any, result: AnalysisResult) -> None:
    """Once the magic's cell has finished, displaying ``result`` shows it again."""

    def forget(*_: Any) -> None:
        result._shown_in_cell = False
        with contextlib.suppress(ValueError):
            shell.events.unregister("post_run_cell", forget)

    shell.events.register("post_run_cell", forget)


# ----------------------------------------------------------------------- the magics


@magics_class
class AnalyzeMagics(Magics):
    """``%analyze`` / ``%%analyze``."""

    def __init__(self, shell: Any, settings: DeepAnalyze) -> None:
        super().__init__(shell)
        self.settings = settings

    @no_var_expand
    @line_cell_magic
    def analyze(self, line: str, cell: str | None = None) -> AnalysisResult | None:
        """Analyze data with DeepAnalyze, in this namespace, live.

        %analyze [VARIABLE ...] "QUESTION" [--model SPEC] [--max-rounds N] [--approve]
        %%analyze [VARIABLE ...] [options]   (the cell body is the question)

        The model's code runs here: what it creates stays defined. With no variable
        named, the question is about the data files in the working directory. Ctrl-C
        (Stop) ends the run. Returns an AnalysisResult: .report, .events, .status,
        .to_notebook(). Model: --model, else the DeepAnalyze config
        (%config DeepAnalyze.model = "http://host:8000/v1"), else $DEEPANALYZE_MODEL.
        """
        arguments = parse_magic_line(line, cell)
        if arguments is None:
            return None
        # A copy per run: --max-rounds must not stick, and an unset model still
        # follows $DEEPANALYZE_MODEL as it is now.
        settings = DeepAnalyze(config=self.settings.config)
        return run_analysis(self.shell, settings, arguments)


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext jupyter_deepanalyze``: register the magics and the ``DeepAnalyze`` config."""
    settings = DeepAnalyze(parent=shell)
    shell.configurables = [c for c in shell.configurables if not isinstance(c, DeepAnalyze)] + [settings]
    shell.register_magics(AnalyzeMagics(shell, settings))


def unload_ipython_extension(shell: Any) -> None:
    shell.configurables = [c for c in shell.configurables if not isinstance(c, DeepAnalyze)]
    shell.magics_manager.magics["line"].pop("analyze", None)
    shell.magics_manager.magics["cell"].pop("analyze", None)
