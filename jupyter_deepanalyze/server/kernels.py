"""The server's kernels as the agent uses them: found by notebook, attached once, dropped on restart.

Owns ``KernelExecutors`` — one ``KernelExecutor`` per server kernel, with its own
client from the kernel's manager (ZMQ for the server's own kernels, the gateway's
websocket when the server runs kernels on a gateway; ``execution.clients``; never a copy
of another client's session), reused by runs and variable probes so their executions are
serialized per kernel, interrupting through the server's kernel manager (the gateway's
interrupt endpoint for gateway kernels), and dropped when the kernel is shut down or
restarted — and ``KernelLease``, the executor a run holds.
Also finds the kernel of a notebook session and its working directory.

The user's own cells reach the kernel through the server's websocket, not through this
client; both queue in the kernel, which is fine.

Must not start, restart or shut down kernels: the server's kernel manager owns them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from jupyter_core.utils import ensure_async

from ..config import default_feedback_options
from ..execution import DeadKernelError, ExecutionResult, OutputCallback
from ..execution.clients import client_for_manager
from ..execution.kernel import KernelExecutor
from ..execution.snapshots import FolderSnapshot
from ..feedback import FeedbackOptions

log = logging.getLogger(__name__)

KERNEL_ACTIONS_SCHEMA = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"


class UnknownKernel(LookupError):
    """No such kernel (or no kernel session for that notebook) on this server."""


@dataclass(frozen=True)
class KernelTarget:
    """The kernel a request addresses and the folder its code runs in."""

    kernel_id: str
    cwd: str


async def find_kernel(serverapp: Any, *, notebook_path: str | None, kernel_id: str | None) -> KernelTarget:
    """The kernel of ``notebook_path``'s session, or ``kernel_id``; with its working directory.

    The session manager starts a notebook's kernel in the notebook's folder; a kernel
    without a session runs in the server root.
    """
    sessions = await ensure_async(serverapp.session_manager.list_sessions())
    path = notebook_path.strip().lstrip("/") if notebook_path else None
    session: dict[str, Any] | None = None
    if path is not None:
        session = next((s for s in sessions if s.get("path") == path and s.get("kernel")), None)
        if session is None:
            raise UnknownKernel(f"No kernel is running for {notebook_path!r}: open it with a kernel first.")
        if kernel_id and session["kernel"]["id"] != kernel_id:
            raise UnknownKernel(f"Kernel {kernel_id} is not the kernel of {notebook_path!r}.")
        kernel_id = session["kernel"]["id"]
    elif kernel_id:
        session = next((s for s in sessions if (s.get("kernel") or {}).get("id") == kernel_id), None)
    if not kernel_id or kernel_id not in serverapp.kernel_manager:
        raise UnknownKernel(f"No such kernel: {kernel_id}.")
    kernel_path = ""
    if session is not None:
        kernel_path = await ensure_async(serverapp.contents_manager.get_kernel_path(session["path"]))
    return KernelTarget(kernel_id, serverapp.kernel_manager.cwd_for_path(kernel_path))


@dataclass(eq=False)
class KernelAttachment:
    """One kernel's executor (once ``attaching`` is done) and how many are using it."""

    kernel_id: str
    pid: int | None  # of the kernel process attached to; another pid means a restart
    attaching: asyncio.Future[KernelExecutor]
    users: int = 0
    stale: bool = False  # the kernel was restarted or shut down since

    @property
    def executor(self) -> KernelExecutor:
        return self.attaching.result()

    @property
    def restarted(self) -> bool:
        """Its executor saw the kernel restart (a gateway kernel's only sign: it has no pid)."""
        done = self.attaching.done() and not self.attaching.cancelled() and self.attaching.exception() is None
        return done and self.executor.restarted


class KernelExecutors:
    """One executor per server kernel, attached on first use and shared afterwards."""

    def __init__(
        self,
        kernel_manager: Any,
        *,
        feedback: FeedbackOptions | None = None,
        attach_timeout: float = 600.0,
    ) -> None:
        self.kernel_manager = kernel_manager
        self.feedback = feedback or default_feedback_options()
        # A kernel busy with a user's cell answers kernel_info only when the cell ends;
        # a dead one is noticed earlier through its heartbeat.
        self.attach_timeout = attach_timeout
        self._attachments: dict[str, KernelAttachment] = {}
        self._closing: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ leasing

    async def acquire(self, kernel_id: str) -> KernelAttachment:
        """The attachment of ``kernel_id`` (attaching if needed); pair with :meth:`release`."""
        if kernel_id not in self.kernel_manager:
            raise UnknownKernel(f"No such kernel: {kernel_id}.")
        pid = self._pid(kernel_id)
        attachment = self._attachments.get(kernel_id)
        if attachment is not None and (attachment.pid != pid or attachment.restarted):
            self.invalidate(kernel_id)  # restarted without an event reaching us
            attachment = None
        if attachment is None:
            attachment = KernelAttachment(kernel_id, pid, asyncio.ensure_future(self._attach(kernel_id)))
            self._attachments[kernel_id] = attachment
            attachment.attaching.add_done_callback(lambda _: self._attached(attachment))
        attachment.users += 1
        try:
            # Shielded: one caller giving up (cancel, timeout) must not abort the attach
            # that the others, and the next caller, are waiting for.
            await asyncio.shield(attachment.attaching)
        except BaseException:
            self.release(attachment)
            raise
        return attachment

    def check_responsive(self, kernel_id: str) -> None:
        """Raise ``KernelUnresponsive`` while the kernel is still busy with code a run was
        told to stop (it ignored the interrupt): a new run would only wait behind it."""
        attachment = self._attachments.get(kernel_id)
        if attachment is None or not attachment.attaching.done() or attachment.attaching.cancelled():
            return
        if attachment.attaching.exception() is None:
            attachment.executor.check_responsive()

    def release(self, attachment: KernelAttachment) -> None:
        attachment.users -= 1
        self._close_if_unused(attachment)

    @asynccontextmanager
    async def lease(self, kernel_id: str) -> AsyncIterator[KernelExecutor]:
        attachment = await self.acquire(kernel_id)
        try:
            yield attachment.executor
        finally:
            self.release(attachment)

    def invalidate(self, kernel_id: str) -> None:
        """The kernel was restarted or shut down: its executor is not reused."""
        attachment = self._attachments.pop(kernel_id, None)
        if attachment is not None:
            attachment.stale = True
            self._close_if_unused(attachment)

    async def on_kernel_action(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        """Listener for the server's ``kernel_actions`` events."""
        if data.get("action") in ("shutdown", "restart") and data.get("kernel_id"):
            self.invalidate(data["kernel_id"])

    async def close(self) -> None:
        """Close every client (server shutdown, after the runs have ended)."""
        attaching = [a.attaching for a in self._attachments.values() if not a.attaching.done()]
        for kernel_id in list(self._attachments):
            self.invalidate(kernel_id)
        pending: set[asyncio.Future[Any]] = {*attaching, *self._closing}
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    # --------------------------------------------------------------- internals

    def _pid(self, kernel_id: str) -> int | None:
        try:
            kernel = self.kernel_manager.get_kernel(kernel_id)
        except KeyError:
            return None
        return getattr(getattr(kernel, "provisioner", None), "pid", None)

    async def _attach(self, kernel_id: str) -> KernelExecutor:
        manager = self.kernel_manager

        async def interrupt() -> None:
            await ensure_async(manager.interrupt_kernel(kernel_id))

        return await KernelExecutor.connect(
            client_for_manager(manager.get_kernel(kernel_id)),
            ready_timeout=self.attach_timeout,
            interrupter=interrupt,
            kernel_id=kernel_id,
            feedback=self.feedback,
        )

    def _attached(self, attachment: KernelAttachment) -> None:
        if attachment.attaching.cancelled() or attachment.attaching.exception() is not None:
            # Failed: the next caller tries again.
            if self._attachments.get(attachment.kernel_id) is attachment:
                del self._attachments[attachment.kernel_id]
            return
        self._close_if_unused(attachment)

    def _close_if_unused(self, attachment: KernelAttachment) -> None:
        if not attachment.stale or attachment.users > 0:
            return
        attaching = attachment.attaching
        if not attaching.done():
            attaching.cancel()  # attach closes its half-made client when cancelled
        elif not attaching.cancelled() and attaching.exception() is None:
            # For an attached executor, shutdown only closes our own channels.
            closing = asyncio.ensure_future(attachment.executor.shutdown())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)


class KernelLease:
    """The executor a run uses: the kernel's shared executor, pinned at first use.

    If the kernel is restarted or shut down during the run, the next block fails with
    ``DeadKernelError`` (its variables are gone) instead of running in a fresh kernel.
    """

    def __init__(self, executors: KernelExecutors, kernel_id: str) -> None:
        self.executors = executors
        self.kernel_id = kernel_id
        self._attachment: KernelAttachment | None = None

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        executor = await self._executor()
        return await executor.execute(code, timeout=timeout, on_output=on_output)

    async def _executor(self) -> KernelExecutor:
        if self._attachment is None:
            try:
                self._attachment = await self.executors.acquire(self.kernel_id)
            except UnknownKernel as exc:
                raise DeadKernelError(f"the kernel is gone: {exc}") from None
        if self._attachment.stale:
            raise DeadKernelError("the kernel was restarted or shut down during the run; its variables are gone")
        return self._attachment.executor

    async def interrupt(self) -> None:
        if self._attachment is not None and not self._attachment.stale:
            await self._attachment.executor.interrupt()

    async def snapshot_files(self, folder: str | None = None) -> FolderSnapshot | None:
        """The kernel's listing of its folder (``KernelExecutor.snapshot_files``)."""
        try:
            executor = await self._executor()
        except DeadKernelError:
            return None  # the block says so
        return await executor.snapshot_files(folder)

    def release(self) -> None:
        if self._attachment is not None:
            self.executors.release(self._attachment)
            self._attachment = None
