"""The DeepAnalyze loop (PROTOCOL.md, "The loop") as a stream of events.

Owns ``Agent.run(task)``: model turn → segments → (approval) → execute → feedback,
until ``<Answer>``, ``max_rounds``, cancellation or a failure. Every ending is a
``run_finished`` event; no exception escapes as a traceback. A task that ``follows`` a
finished run continues its conversation (``conversation``); a history that no longer
fits the context window is shortened, oldest execute outputs first. The files each
block writes (the executor lists its folder before and after) become ``artifacts``
events and the report's closing Files list. A turn whose stream broke off is asked for
again once, never acted on. Everything a run produces passes one ``sanitize.Redactor`` on
its way out (events) and back to the model (feedback, turns): configured secrets read
``***``, lone surrogates U+FFFD.

Must not know about HTTP, the browser or files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .artifacts import RunFiles, files_section
from .config import DeepAnalyze
from .conversation import Conversation, chars_to_free, follow_up_messages, shorten_history
from .events import (
    ApprovalRequired,
    Artifacts,
    CellCreated,
    ClearOutput,
    Delta,
    Event,
    EventSequence,
    ExecutionFinished,
    OutputAppended,
    RunFinished,
    RunStarted,
    SegmentFinished,
    cell_id_for,
    cell_metadata,
    new_run_id,
)
from .execution import DeadKernelError, ExecutionFailure, Executor, KernelUnresponsive
from .execution.snapshots import changed_files
from .llm import (
    ChatModel,
    ContextWindowFullError,
    GenerationParams,
    ModelError,
    ModelUnavailableError,
    StreamCutOff,
)
from .outputs import ClearOutputs, OutputChange
from .protocol import (
    DataFile,
    Segment,
    VariableInfo,
    extract_code,
    format_size,
    replace_code,
)
from .sanitize import Redactor
from .turns import TurnSink, read_turn

log = logging.getLogger(__name__)

SKIPPED_FEEDBACK = "[Skipped]: the user chose not to run this code."

_ROLES = {"Analyze": "analyze", "Understand": "understand", None: "note"}
_LABELS = {"Analyze": "**Analyze**", "Understand": "**Understand**"}


@dataclass(frozen=True)
class Task:
    """What a run is asked to do, and the data it may use."""

    question: str
    files: Sequence[DataFile] = ()
    variables: Sequence[VariableInfo] = ()
    more_files: int = 0
    """Data files left out of ``files`` (a bounded listing): the model is told how many."""
    follows: Conversation | None = None
    """A finished run whose conversation this task continues (a follow-up question)."""


@dataclass(frozen=True)
class Approval:
    """The user's answer to ``approval_required``: ``run`` (possibly edited code) or ``skip``."""

    action: str = "run"
    code: str | None = None


ApprovalHook = Callable[[str, str], Awaitable[Approval]]
"""``await hook(cell_id, code)`` before each execution; absent means run everything."""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


class _RunEnded(Exception):
    def __init__(self, status: str, error: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.error = error


class Agent:
    """Runs one task with a model and an executor, emitting events as it goes."""

    def __init__(
        self,
        model: ChatModel,
        executor: Executor,
        *,
        max_rounds: int = 30,
        execution_timeout: float | None = 600.0,
        temperature: float = 0.5,
        max_tokens: int = 32768,
        approval: ApprovalHook | None = None,
        run_id: str | None = None,
        kernel_id: str | None = None,
        secrets: Sequence[str] = (),
        track_files: bool = True,
        file_links: str = "",
    ) -> None:
        self.model = model
        self.executor = executor
        self.max_rounds = max_rounds
        self.execution_timeout = execution_timeout
        self.params = GenerationParams(temperature=temperature, max_tokens=max_tokens)
        self.approval = approval
        self.run_id = run_id or new_run_id()
        self.kernel_id = kernel_id
        self.track_files = track_files
        self.file_links = file_links
        """The run's working folder as seen from where its report is read (``""``: the
        same folder; ``"OUT_files/"`` for the CLI's report): the Files list's links start with it."""
        self.messages: list[dict[str, str]] = []
        """The conversation as sent to the model; a follow-up continues it (``conversation``)."""
        self.files = RunFiles()
        self.status: str | None = None
        self._events = EventSequence(self.run_id)
        self._redactor = Redactor(secrets)
        self._emit: Callable[[Event], None] = lambda event: None
        self._worker: asyncio.Task[None] | None = None
        self._started = False  # the worker's coroutine has begun (it can take a cancel)
        self._task: Task | None = None
        self._begun = False  # run_started and the title cell are out
        self._cancelled = False
        self._step = 0
        self._code_cell_id = ""
        self._report_cell_id: str | None = None

    @classmethod
    def from_config(
        cls, config: DeepAnalyze, model: ChatModel, executor: Executor, **options: Any
    ) -> Agent:
        settings: dict[str, Any] = {
            "max_rounds": config.max_rounds,
            "execution_timeout": config.execution_timeout,
            "temperature": config.temperature,
            "max_tokens": config.max_tokens,
            "track_files": config.track_files,
        }
        options["secrets"] = (*config.secrets(), *options.get("secrets", ()))
        return cls(model, executor, **{**settings, **options})

    # ------------------------------------------------------------------ public

    async def run(self, task: Task) -> AsyncIterator[Event]:
        """Run ``task``; yields every event, ``run_finished`` last."""
        if self._worker is not None:
            raise RuntimeError("an Agent runs one task; make a new Agent for the next")
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task = task
        self._emit = queue.put_nowait
        self._worker = asyncio.create_task(self._run(task, queue))
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            if not self._worker.done():
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker

    def conversation(self) -> Conversation:
        """This run's conversation, for a follow-up to continue (``Task(follows=…)``)."""
        return Conversation.of(self.run_id, self.messages)

    def cancel(self) -> None:
        """Stop the model stream and interrupt the kernel; the run ends ``cancelled``.

        Before the run has begun, the cancel is remembered: the run then ends
        ``cancelled`` at once (``run_started``, its title cell, a status cell and
        ``run_finished``) without asking the model anything. Calling it again does nothing.
        """
        if self._cancelled:
            return
        self._cancelled = True
        if self._started and self._worker is not None and not self._worker.done():
            self._worker.cancel()

    def abandon(self, error: str | None = None) -> list[Event]:
        """End the run at once, without waiting for it to wind down (the process is about to
        quit): returns the events that close it — a status cell and ``run_finished
        {cancelled}`` — for the caller to record; the worker's later events are dropped.
        Returns nothing when the run has ended already."""
        if self.status is not None:
            return []
        closing: list[Event] = []
        self._emit = closing.append
        if self._task is not None:  # abandoned while the model was still opening
            self._begin(self._task)
        self.status = "cancelled"
        self._status_cell("cancelled", error)
        self._make(RunFinished, status="cancelled", error=error)
        self._emit = lambda event: None
        return closing

    # ------------------------------------------------------------------ the loop

    def _make(self, cls: type[Event], **fields: Any) -> Event:
        event = self._events.make(cls, **{name: self._redactor.value(value) for name, value in fields.items()})
        self._emit(event)
        return event

    def _cell(self, role: str, cell_type: str, source: str) -> str:
        self._step += 1
        cell_id = cell_id_for(self.run_id, self._step)
        self._make(
            CellCreated,
            cell_id=cell_id,
            cell_type=cell_type,
            source=source,
            metadata=cell_metadata(self.run_id, self._step, role),
        )
        return cell_id

    async def _run(self, task: Task, queue: asyncio.Queue[Event | None]) -> None:
        status, error, report_cell_id = "failed", None, None
        self._started = True
        try:
            try:
                if self._cancelled:  # before the run began: end it as a cancel at once would
                    raise asyncio.CancelledError
                await self.model.ready()
            finally:
                self._begin(task)
            dialect = self.model.dialect
            question = self._redactor.text(task.question)
            first = dialect.first_message(question, task.files, task.variables, task.more_files)
            if task.follows is not None:
                self.messages = follow_up_messages(dialect, task.follows.messages, first)
            else:
                self.messages = dialect.initial_messages(first)
            report_cell_id = await self._loop()
            status = "completed"
        except _RunEnded as ended:
            status, error = ended.status, ended.error
        except asyncio.CancelledError:
            status = "cancelled"
        except KernelUnresponsive as exc:  # a cancel (or a timeout) the code ignored
            status = "cancelled" if self._cancelled else "failed"
            error = _sentence(str(exc))
        except ModelError as exc:
            error = str(exc)
        except (DeadKernelError, ExecutionFailure) as exc:
            error = f"Execution failed: {exc}"
        except Exception as exc:  # the run ends cleanly whatever broke
            log.exception("run %s failed", self.run_id)
            error = f"Internal error: {type(exc).__name__}: {exc}"
        if self.status is None:  # not abandoned meanwhile
            self.status = status
            if status != "completed":
                self._status_cell(status, error)
            self._make(RunFinished, status=status, report_cell_id=report_cell_id, error=error)
        queue.put_nowait(None)

    def _begin(self, task: Task) -> None:
        """``run_started`` and the title cell, once."""
        if self._begun:
            return
        self._begun = True
        model = self.model.name or self.model.spec
        parent = task.follows.run_id if task.follows else None
        self._make(RunStarted, question=task.question, model=model, kernel_id=self.kernel_id, parent_run_id=parent)
        self._title_cell(task)

    def _title_cell(self, task: Task) -> None:
        lines = [f"## DeepAnalyze: {task.question.strip()}", ""]
        if task.files:
            listed = ", ".join(f"`{f.name}` ({format_size(f.size_bytes)})" for f in task.files)
            more = f" and {task.more_files} more files" if task.more_files else ""
            lines.append(f"**Data:** {listed}{more}  ")
        if task.variables:
            lines.append("**Variables:** " + ", ".join(f"`{v.name}`" for v in task.variables) + "  ")
        lines.append(f"**Model:** {self.model.name or self.model.spec}")
        self._step = -1
        self._cell("title", "markdown", "\n".join(lines))

    def _status_cell(self, status: str, error: str | None) -> None:
        text = {
            "cancelled": f"**Run cancelled.** {error}" if error else "**Run cancelled.**",
            "max_rounds": f"**Run stopped after {self.max_rounds} rounds** without a final answer.",
            "failed": f"**Run failed:** {error}",
        }[status]
        self._cell("status", "markdown", text)

    async def _loop(self) -> str | None:
        for _ in range(self.max_rounds):
            turn, segments = await self._fitting_turn()
            report = next((s for s in segments if s.tag == "Answer"), None)
            code = next((s for s in segments if s.tag == "Code"), None)
            if not turn.strip():
                raise _RunEnded("failed", "The model returned an empty turn.")
            turn = self._redactor.text(turn)
            if report is not None:
                self.messages.append({"role": "assistant", "content": turn})
                return self._report_cell_id
            if code is None:
                self.messages.append({"role": "assistant", "content": turn})
                continue
            original = extract_code(code.text)
            ran_code, feedback = await self._execute(self._code_cell_id, original)
            if ran_code != original:  # the model is told what really ran, and only that changes
                turn = replace_code(turn, ran_code)
            self.messages.append({"role": "assistant", "content": turn})
            self.messages.append(self.model.dialect.execute_message(self._redactor.text(feedback)))
        raise _RunEnded("max_rounds")

    async def _fitting_turn(self) -> tuple[str, list[Segment]]:
        """A model turn; while the history does not fit the context window, its oldest
        long execute outputs are shortened (PROTOCOL.md, "Follow-ups") and it is asked again."""
        while True:
            try:
                return await self._finished_turn()
            except ContextWindowFullError as full:
                chars = chars_to_free(full.limit, full.needed)
                shortened = shorten_history(self.messages, self.model.dialect, chars)
                if shortened is None:
                    raise
                log.info("run %s: the history did not fit the context window; older outputs shortened", self.run_id)
                self.messages = shortened

    async def _finished_turn(self) -> tuple[str, list[Segment]]:
        """A model turn whose stream ended properly, asked for again once if it broke off.

        What a cut-off stream sent is never acted on (PROTOCOL.md, "A turn that did not
        finish"): a code block it left open is not run, an answer it left open does not end
        the run. The steps it finished stay shown, followed by a status cell saying so.
        """
        try:
            return await self._model_turn()
        except StreamCutOff as cut:
            first = str(cut)
            log.warning("run %s: %s Asking again.", self.run_id, first)
            self._cell("status", "markdown", f"*{first} What it sent is not used: the model is asked again.*")
        try:
            return await self._model_turn()
        except StreamCutOff as cut:
            raise _RunEnded("failed", f"{cut} It broke off twice; none of the cut-off code was run.") from None
        except ModelUnavailableError:
            raise _RunEnded("failed", f"{first} Asked again, it did not answer.") from None

    async def _model_turn(self) -> tuple[str, list[Segment]]:
        """Stream one turn (``turns.read_turn``): deltas, segments and cells as they come."""
        self._code_cell_id = ""
        self._report_cell_id = None

        def delta(tag: str | None, text: str) -> None:
            self._make(Delta, step=self._step + 1, text=text, tag=tag)

        def unfinished(segment: Segment) -> None:  # a step of its own, never a cell
            self._step += 1
            self._make(SegmentFinished, step=self._step, tag=segment.tag, text=segment.text)

        sink = TurnSink(delta=delta, segment=self._segment, unfinished=unfinished)
        return await read_turn(self.model.stream(self.messages, self.params), sink)

    def _segment(self, segment: Segment) -> None:
        step = self._step + 1
        self._make(SegmentFinished, step=step, tag=segment.tag, text=segment.text)
        text = segment.text.strip()
        if segment.tag == "Code":
            self._code_cell_id = self._cell("code", "code", extract_code(segment.text))
        elif segment.tag == "Answer":
            files = files_section(self.files.files, self.file_links)
            self._report_cell_id = self._cell("report", "markdown", f"{text}\n\n{files}" if files else text)
        elif segment.tag in _ROLES and text:
            label = _LABELS.get(segment.tag)
            self._cell(_ROLES[segment.tag], "markdown", f"{label}\n\n{text}" if label else text)
        else:
            self._step = step  # an <Execute> the model wrote itself: shown, never a cell

    async def _execute(self, cell_id: str, code: str) -> tuple[str, str]:
        """Run (or skip) the block; returns the code that ran and the model's feedback."""
        if self.approval is not None:
            self._make(ApprovalRequired, cell_id=cell_id, code=code)
            answer = await self.approval(cell_id, code)
            edited = answer.code if answer.code is not None else code
            if answer.action == "skip":
                self._make(
                    ExecutionFinished,
                    cell_id=cell_id,
                    status="skipped",
                    feedback=SKIPPED_FEEDBACK,
                    code=edited if edited != code else None,
                )
                return edited, SKIPPED_FEEDBACK
            ran = edited
        else:
            ran = code

        def forward(change: OutputChange) -> None:
            if isinstance(change, ClearOutputs):
                self._make(ClearOutput, cell_id=cell_id, wait=change.wait)
            else:
                self._make(
                    OutputAppended,
                    cell_id=cell_id,
                    output=change.output,
                    display_id=change.display_id,
                    update=change.update,
                )

        changed = ran if ran != code else None
        lister = getattr(self.executor, "snapshot_files", None) if self.track_files else None
        before = await lister() if lister is not None else None
        try:
            result = await self.executor.execute(ran, timeout=self.execution_timeout, on_output=forward)
        except asyncio.CancelledError:
            self._make(ExecutionFinished, cell_id=cell_id, status="interrupted", code=changed)
            raise
        except DeadKernelError as exc:
            self._make(ExecutionFinished, cell_id=cell_id, status="dead", feedback=str(exc), code=changed)
            raise
        except KernelUnresponsive as exc:
            self._make(ExecutionFinished, cell_id=cell_id, status="unresponsive", feedback=str(exc), code=changed)
            raise
        self._make(
            ExecutionFinished,
            cell_id=cell_id,
            status=result.status,
            execution_count=result.execution_count,
            feedback=result.feedback,
            code=changed,
        )
        if before is not None and lister is not None and (after := await lister(before.folder)) is not None:
            if written := changed_files(before, after):
                self.files.add(written)
                self._make(Artifacts, step=self._step, files=[artifact.to_json() for artifact in written])
        return ran, result.feedback
