"""The DeepAnalyze loop (PROTOCOL.md, "The loop") as a stream of events.

Owns ``Agent.run(task)``: model turn → segments → (approval) → execute → feedback,
until ``<Answer>``, ``max_rounds``, cancellation or a failure. Every ending is a
``run_finished`` event; no exception escapes as a traceback. Everything a run produces
passes one ``sanitize.Redactor`` on its way out (events) and back to the model
(feedback, turns): configured secrets read ``***``, lone surrogates U+FFFD.

Must not know about HTTP, the browser or files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .config import DeepAnalyze
from .events import (
    ApprovalRequired,
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
from .llm import ChatModel, GenerationParams, ModelError, ModelUnavailableError, StreamCutOff
from .outputs import ClearOutputs, OutputChange
from .protocol import (
    CODE_CLOSE,
    DataFile,
    Segment,
    SegmentDelta,
    SegmentParser,
    VariableInfo,
    extract_code,
    format_size,
    replace_code,
)
from .sanitize import Redactor, clean_text

log = logging.getLogger(__name__)

DELTA_FLUSH_SECONDS = 0.05
"""Streamed text is sent to sinks at most this often (tokens are coalesced)."""
YIELD_SECONDS = 0.02
"""A stream arriving faster than it is parsed is read without ever waiting: the turn lets
the event loop run other work at least this often (nothing the model sends stalls a server)."""
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
    ) -> None:
        self.model = model
        self.executor = executor
        self.max_rounds = max_rounds
        self.execution_timeout = execution_timeout
        self.params = GenerationParams(temperature=temperature, max_tokens=max_tokens)
        self.approval = approval
        self.run_id = run_id or new_run_id()
        self.kernel_id = kernel_id
        self.messages: list[dict[str, str]] = []
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
            self.messages = dialect.initial_messages(
                dialect.first_message(
                    self._redactor.text(task.question), task.files, task.variables, task.more_files
                )
            )
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
        self._make(RunStarted, question=task.question, model=model, kernel_id=self.kernel_id)
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
            turn, segments = await self._finished_turn()
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
        """Stream one turn; emit deltas, segments and cells; stop after the first code block."""
        parser = SegmentParser()
        chunks: list[str] = []
        segments: list[Segment] = []
        # Text of the pending deltas (strings, not delta objects: a fast stream leaves nothing
        # for the garbage collector to walk) and the tag they belong to.
        pending: list[str] = []
        pending_tag: list[str | None] = [None]
        last_flush = time.monotonic()
        self._code_cell_id = ""
        self._report_cell_id = None

        def flush() -> None:
            nonlocal last_flush
            if pending:
                # Every pending delta belongs to the segment in progress (a finished segment
                # flushes first): its tag is theirs, not whatever the parser has opened since.
                self._make(Delta, step=self._step + 1, text="".join(pending), tag=pending_tag[0])
                pending.clear()
            last_flush = time.monotonic()

        def handle(items: list[SegmentDelta | Segment]) -> bool:
            for item in items:
                if isinstance(item, SegmentDelta):
                    if not pending:
                        pending_tag[0] = item.tag
                    pending.append(item.text)
                    continue
                flush()
                segments.append(item)
                self._segment(item)
                if item.tag == "Code" or (item.tag == "Answer" and item.closed):
                    return True  # the turn is over: code to run, or the final answer
            if time.monotonic() - last_flush >= DELTA_FLUSH_SECONDS:
                flush()
            return False

        stream = self.model.stream(self.messages, self.params)
        ended = False
        try:
            last_yield = time.monotonic()
            async for piece in stream:
                chunk = clean_text(piece)
                chunks.append(chunk)
                if handle(parser.feed(chunk)):
                    ended = True
                    break
                if time.monotonic() - last_yield >= YIELD_SECONDS:
                    await asyncio.sleep(0)  # a yield to the loop, not a wait
                    last_yield = time.monotonic()
        except StreamCutOff:
            # What streamed was shown as it came; its unfinished step is closed for the
            # sinks (a step of its own, never a cell) and nothing of it is acted on.
            rest = parser.close()
            handle([item for item in rest if isinstance(item, SegmentDelta)])
            flush()
            unfinished = [item for item in rest if isinstance(item, Segment)]
            for segment in unfinished:
                self._step += 1
                self._make(SegmentFinished, step=self._step, tag=segment.tag, text=segment.text)
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        turn = "".join(chunks)
        if ended:
            # Anything after the first </Code> was not produced by a model that stopped
            # there (vLLM does): the next round answers the code. After </Answer> the run
            # is over, so the rest of the stream is not waited for either.
            tag = segments[-1].tag
            closing = f"</{tag}>"
            turn = turn[: turn.index(closing, turn.index(f"<{tag}>")) + len(closing)]
        else:
            handle(parser.close())
            flush()
            if segments and segments[-1].tag == "Code" and not segments[-1].closed:
                turn += CODE_CLOSE  # cut off by max_tokens: close it so history stays well-formed
        return turn, segments

    def _segment(self, segment: Segment) -> None:
        step = self._step + 1
        self._make(SegmentFinished, step=step, tag=segment.tag, text=segment.text)
        text = segment.text.strip()
        if segment.tag == "Code":
            self._code_cell_id = self._cell("code", "code", extract_code(segment.text))
        elif segment.tag == "Answer":
            self._report_cell_id = self._cell("report", "markdown", text)
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
        return ran, result.feedback
