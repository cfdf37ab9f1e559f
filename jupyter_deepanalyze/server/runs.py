"""Runs of the agent on the server's kernels, and their replayable event logs.

Owns ``RunManager`` — at most one active run per kernel; each run a background task
that outlives the request that started it and every browser connection; the events of
each run kept in memory while it runs and appended to a JSONL log, so any client can
replay them from any ``seq``; finished runs kept in a small LRU, the rest read back from
their logs (the run list too: ``runlist``); cancel (the model stream stops, the kernel is
interrupted, the run ends ``cancelled``); approvals (``approval_required`` waits for the user's answer); finished
runs read back lazily from their logs after a server restart; active runs cancelled
cleanly when the server stops; follow-ups (a finished run's conversation continued on
the same kernel, its messages kept beside its log) and a run's chain of parents — and
``Run``, one run's state.

Must not know about HTTP: handlers translate its named errors into status codes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agent import Agent, Approval, Task
from ..config import DeepAnalyze
from ..conversation import Conversation
from ..events import RUN_STATUSES, Event, RunFinished, new_run_id
from ..llm.registry import ModelRegistry
from ..protocol import DataFile, VariableInfo
from ..recorder import RunRecorder
from .eventlog import EventLog, log_path, read_conversation, read_events, write_conversation
from .kernels import KernelExecutors, KernelLease
from .models import OnDemandModel
from .runlist import DEFAULT_LIMIT, list_logged_runs, summary
from .user_models import UserModel

log = logging.getLogger(__name__)

MAX_FINISHED_IN_MEMORY = 16
"""Finished runs kept in memory; older ones are read back from their logs on demand."""
MAX_CHAIN = 100
"""Follow-ups of follow-ups read back for one conversation, at most."""
SHUTDOWN_GRACE_SECONDS = 5.0
"""How long server shutdown waits for cancelled runs to write their last events."""
LOST_RUN_ERROR = "The server stopped before the run finished."


class UnknownRun(LookupError):
    """No run with that id, in memory or on disk."""


class KernelHasActiveRun(RuntimeError):
    """The kernel already runs the agent (one active run per kernel)."""

    def __init__(self, kernel_id: str, run_id: str) -> None:
        super().__init__(f"Kernel {kernel_id} already has an active run ({run_id}); cancel it or wait.")
        self.run_id = run_id


class NotWaitingForApproval(RuntimeError):
    """An approval answer for a cell the run is not waiting on."""


class CannotFollowUp(RuntimeError):
    """A follow-up of a run that has not finished, ran on another kernel, or kept no conversation."""


@dataclass(frozen=True)
class RunRequest:
    """A validated request to start a run (files and variables already resolved)."""

    kernel_id: str
    question: str
    model: str
    files: Sequence[DataFile] = ()
    variables: Sequence[VariableInfo] = ()
    more_files: int = 0  # data files beyond those described (a bounded listing)
    approval: str = "auto"
    user_model: UserModel | None = None  # the requesting user's own model (Model settings)
    follows: Conversation | None = None  # a follow-up: the finished run's conversation
    file_links: str = ""  # the kernel's folder as seen from the notebook's (the report's links)


@dataclass(eq=False)
class Run:
    """One run: its events (index == ``seq``), outcome, followers and pending approvals."""

    run_id: str
    kernel_id: str | None
    events: list[dict[str, Any]] = field(default_factory=list)
    agent: Agent | None = None
    recorder: RunRecorder = field(default_factory=lambda: RunRecorder(notebook=False))
    _log: EventLog | None = None
    _followers: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    _approvals: dict[str, asyncio.Future[Approval]] = field(default_factory=dict)
    _finished: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        for event in self.events:  # read back from a log
            self.recorder.apply(event)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def status(self) -> str:
        """``running``, ``waiting_approval``, or the final status of ``run_finished``."""
        if self.recorder.outcome.status is not None:
            return self.recorder.outcome.status
        return "waiting_approval" if self._approvals else "running"

    def snapshot(self) -> dict[str, Any]:
        """``GET /deepanalyze/runs/{id}``: status and every event so far."""
        return {
            "run_id": self.run_id,
            "kernel_id": self.kernel_id,
            "status": self.status,
            "events": list(self.events),
        }

    @property
    def parent_run_id(self) -> str | None:
        return self.recorder.outcome.parent_run_id

    def summary(self) -> dict[str, Any]:
        """Its entry in the run list (``runlist.summary``)."""
        started = self.events[0] if self.events and self.events[0]["type"] == "run_started" else {}
        return summary(self.run_id, {"kernel_id": self.kernel_id, **started}, self.status)

    # ----------------------------------------------------------------- events

    def append(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.recorder.apply(event)
        if self._log is not None:
            self._log.append(event)
        for queue in self._followers:
            queue.put_nowait(event)
        if event["type"] == "run_finished":
            self._finished.set()
            if self._log is not None:
                self._log.close()
                self._log = None

    async def follow(self, since: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every event with ``seq >= since``, then new ones as they come; ends after ``run_finished``."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # No await between copying the backlog and subscribing: nothing is lost or doubled.
        backlog = self.events[max(since, 0) :]
        done = self.finished
        self._followers.add(queue)
        try:
            for event in backlog:
                yield event
            if done:
                return
            while True:
                event = await queue.get()
                if event["seq"] >= since:
                    yield event
                if event["type"] == "run_finished":
                    return
        finally:
            self._followers.discard(queue)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the run to finish; True if it has."""
        try:
            await asyncio.wait_for(self._finished.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    # --------------------------------------------------------------- control

    def cancel(self) -> None:
        if self.agent is not None and not self.finished:
            self.agent.cancel()  # remembered if the agent has not begun yet

    async def request_approval(self, cell_id: str, code: str) -> Approval:
        """The agent's approval hook: wait for :meth:`answer` on ``cell_id``."""
        future: asyncio.Future[Approval] = asyncio.get_running_loop().create_future()
        self._approvals[cell_id] = future
        try:
            return await future
        finally:
            self._approvals.pop(cell_id, None)

    def answer(self, cell_id: str, approval: Approval) -> None:
        future = self._approvals.get(cell_id)
        if future is None or future.done():
            raise NotWaitingForApproval(f"Run {self.run_id} is not waiting for approval of cell {cell_id!r}.")
        future.set_result(approval)


class RunManager:
    """Starts, tracks, replays and cancels runs; at most one active run per kernel."""

    def __init__(
        self, config: DeepAnalyze, executors: KernelExecutors, log_dir: Path, models: ModelRegistry
    ) -> None:
        self.config = config
        self.executors = executors
        self.models = models
        self.log_dir = log_dir
        self._active: dict[str, Run] = {}  # kernel id → its active run
        self._runs: dict[str, Run] = {}  # run id → active run
        self._finished: OrderedDict[str, Run] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # ----------------------------------------------------------------- queries

    def check_idle(self, kernel_id: str) -> None:
        """Raise ``KernelHasActiveRun``, or ``KernelUnresponsive`` while the kernel is still
        busy with the code of a cancelled run that ignored the interrupt."""
        run = self._active.get(kernel_id)
        if run is not None:
            raise KernelHasActiveRun(kernel_id, run.run_id)
        self.executors.check_responsive(kernel_id)

    def get(self, run_id: str) -> Run:
        run = self._runs.get(run_id) or self._finished.get(run_id)
        if run is not None:
            return run
        try:
            path = log_path(self.log_dir, run_id)
        except ValueError:
            raise UnknownRun(f"No run {run_id!r}.") from None
        if not path.is_file():
            raise UnknownRun(f"No run {run_id!r}.")
        return self._remember(self._load(run_id, path))

    async def list_runs(
        self, kernel_id: str | None = None, *, limit: int = DEFAULT_LIMIT, before: str | None = None
    ) -> list[dict[str, Any]]:
        """Summaries of every run logged (active ones with their live status), newest
        first, read from the logs off the event loop; raises ``runlist.UnknownCursor``."""
        live = {run.run_id: run.summary() for run in self._runs.values()}
        listed = await asyncio.to_thread(
            list_logged_runs, self.log_dir, kernel_id=kernel_id, limit=limit, before=before, live=live
        )
        if before is None:  # an active run whose log could not be written is listed all the same
            unlogged = [
                entry
                for entry in live.values()
                if kernel_id in (None, entry["kernel_id"]) and not log_path(self.log_dir, entry["run_id"]).exists()
            ]
            listed = unlogged + listed
        return listed[:limit]

    def follow_up_of(self, parent_run_id: str, kernel_id: str) -> Conversation:
        """The conversation a follow-up of ``parent_run_id`` on ``kernel_id`` continues.

        Raises ``UnknownRun``, or ``CannotFollowUp`` when that run has not finished, ran
        on another kernel (its variables are not there) or kept no conversation.
        """
        parent = self.get(parent_run_id)
        if not parent.finished:
            raise CannotFollowUp(f"Run {parent_run_id} has not finished: wait for it (or stop it) first.")
        if parent.kernel_id != kernel_id:
            raise CannotFollowUp(
                f"Run {parent_run_id} ran on kernel {parent.kernel_id}, not {kernel_id}: a follow-up "
                "runs on the kernel that holds its variables; start a new conversation instead."
            )
        if parent.agent is not None and parent.agent.status is not None:
            return parent.agent.conversation()
        conversation = read_conversation(self.log_dir, parent_run_id)
        if conversation is None:
            raise CannotFollowUp(f"Run {parent_run_id} kept no conversation to continue; start a new one.")
        return conversation

    def chain(self, run_id: str) -> list[Run]:
        """``run_id``'s run and the runs it follows up, the first question first."""
        runs = [self.get(run_id)]
        while (parent := runs[-1].parent_run_id) is not None and len(runs) <= MAX_CHAIN:
            try:
                runs.append(self.get(parent))
            except UnknownRun:
                break
        return runs[::-1]

    # ------------------------------------------------------------------- runs

    def start(self, request: RunRequest) -> Run:
        """Start a run in the background; raises ``KernelHasActiveRun``."""
        self.check_idle(request.kernel_id)
        run = Run(run_id=new_run_id(), kernel_id=request.kernel_id)
        run._log = EventLog(self.log_dir, run.run_id)
        model = OnDemandModel(self.models, request.model, request.user_model)
        lease = KernelLease(self.executors, request.kernel_id)
        manual = request.approval == "manual"
        run.agent = Agent.from_config(
            self.config,
            model,
            lease,
            approval=run.request_approval if manual else None,
            run_id=run.run_id,
            kernel_id=request.kernel_id,
            secrets=(request.user_model.api_key,) if request.user_model else (),
            file_links=request.file_links,
        )
        task = Task(
            request.question,
            tuple(request.files),
            tuple(request.variables),
            request.more_files,
            follows=request.follows,
        )
        self._active[request.kernel_id] = run
        self._runs[run.run_id] = run
        self._tasks[run.run_id] = asyncio.create_task(self._drive(run, task, model, lease))
        return run

    async def _drive(self, run: Run, task: Task, model: OnDemandModel, lease: KernelLease) -> None:
        assert run.agent is not None
        try:
            async for event in run.agent.run(task):
                run.append(event.to_json())
        except Exception as exc:  # the agent ends every run itself; this is a last resort
            log.exception("DeepAnalyze run %s broke", run.run_id)
            if not run.finished:
                self._finish(run, "failed", f"Internal error: {type(exc).__name__}: {exc}")
        finally:
            if not run.finished:  # only if this task itself was cancelled
                self._finish(run, "cancelled", None)
            write_conversation(self.log_dir, run.agent.conversation())
            lease.release()
            try:
                await model.aclose()
            finally:
                if self._active.get(run.kernel_id or "") is run:
                    del self._active[run.kernel_id or ""]
                self._runs.pop(run.run_id, None)
                self._tasks.pop(run.run_id, None)
                self._remember(run)

    def _finish(self, run: Run, status: str, error: str | None) -> None:
        event: Event = RunFinished(run_id=run.run_id, seq=len(run.events), status=status, error=error)
        run.append(event.to_json())

    def _load(self, run_id: str, path: Path) -> Run:
        events = read_events(path)
        started = next((e for e in events if e["type"] == "run_started"), {})
        run = Run(run_id=run_id, kernel_id=started.get("kernel_id"), events=events)
        last = events[-1] if events else {}
        if last.get("type") == "run_finished" and last.get("status") in RUN_STATUSES:
            run._finished.set()
        else:
            # The server stopped without closing this log: close it now, once.
            run._log = EventLog(self.log_dir, run_id)
            self._finish(run, "failed", LOST_RUN_ERROR)
        return run

    def _remember(self, run: Run) -> Run:
        self._finished[run.run_id] = run
        self._finished.move_to_end(run.run_id)
        while len(self._finished) > MAX_FINISHED_IN_MEMORY:
            self._finished.popitem(last=False)
        return run

    async def shutdown(self) -> None:
        """Cancel every active run and let each write ``run_finished{cancelled}``."""
        tasks = list(self._tasks.values())
        for run in list(self._runs.values()):
            run.cancel()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
