"""What a kernel executor does when code will not stop, or the kernel goes down under it.

Owns ``KernelStopping``, the part of ``KernelExecutor`` that settles a cancelled execution
(the interrupt, then ``CANCEL_GRACE_SECONDS`` for the kernel to go idle, what the code
shows meanwhile sent on), marks the kernel *stuck* when the code ignored the interrupt
(every later execution refused at once with ``KernelUnresponsive`` until a background
watch sees the kernel idle, or it is restarted), and tells a restart or shutdown from a
plain ``KeyboardInterrupt`` (a restart interrupts the code before it shuts the kernel
down). Also the messages these say, in JupyterLab's terms.

Must not start, restart or shut down kernels.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from typing import Any, Protocol

from ..outputs import OutputAccumulator
from . import DeadKernelError, ExecutionFailure, KernelUnresponsive

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
"""How often a quiet kernel is looked at while waiting for it."""
CANCEL_GRACE_SECONDS = 1.5
"""How long a cancelled execution waits for the kernel to settle (cancel ends in < 2 s)."""
RESTART_SIGNAL_SECONDS = 1.0
"""After a ``KeyboardInterrupt`` this executor did not send, how long to watch for the
kernel going down (a restart interrupts the code first, then shuts the kernel down)."""
RESTARTED = "the kernel restarted; its variables are gone"
SHUT_DOWN = "the kernel was shut down; its variables are gone"
RESTART_HINT = "Restart the kernel (Kernel > Restart Kernel…) to use it again; its variables will be lost."
STILL_BUSY = (
    "the kernel is still busy with code that ignored the interrupt (it catches KeyboardInterrupt). " + RESTART_HINT
)


class _Sender(Protocol):
    async def send(self) -> None: ...


class KernelStopping:
    """Mixed into ``KernelExecutor``: see the module docstring."""

    client: Any
    stuck: str | None
    _watcher: asyncio.Task[None] | None
    _closed: bool

    async def interrupt(self) -> None: ...

    async def is_alive(self) -> bool: ...

    async def _next_message(self, wait: float) -> dict[str, Any] | None: ...

    def check_responsive(self) -> None:
        """Raise ``KernelUnresponsive`` while the kernel is busy with code it was told to stop."""
        if self.stuck is not None:
            raise KernelUnresponsive(STILL_BUSY)

    async def _settle_after_cancel(self, msg_id: str, outputs: OutputAccumulator, forward: _Sender) -> bool:
        """Interrupt the cancelled execution and give the kernel a moment to go idle; what
        the code showed meanwhile (up to the ``KeyboardInterrupt``) is kept, and sent on as
        it comes. False when the kernel is still busy with it after the grace period."""
        try:
            await asyncio.wait_for(self._interrupt_until_idle(msg_id, outputs, forward), CANCEL_GRACE_SECONDS)
        except asyncio.TimeoutError:
            log.info("the kernel is still busy %.1f s after the cancel's interrupt", CANCEL_GRACE_SECONDS)
            return False
        except ExecutionFailure as exc:  # died or restarted meanwhile: it is not busy
            log.debug("kernel after cancel: %s", exc)
        return True

    async def _interrupt_until_idle(self, msg_id: str, outputs: OutputAccumulator, forward: _Sender) -> None:
        await forward.send()
        await self.interrupt()
        while True:
            try:
                msg = await self.client.get_iopub_msg(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                return
            outputs.handle(msg["msg_type"], msg["content"])
            await forward.send()  # the run may be abandoned before this settles: send it now

    async def _going_down(self) -> bool | None:
        """Whether the kernel is being restarted (True) or shut down (False) — a restart
        interrupts the running code before it shuts the kernel down — watched for
        ``RESTART_SIGNAL_SECONDS``; None when it stays up."""
        deadline = asyncio.get_running_loop().time() + RESTART_SIGNAL_SECONDS
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await self._next_message(min(remaining, POLL_SECONDS))
            except DeadKernelError:  # its status says starting, restarting or dead
                return True
            if msg is not None and msg["msg_type"] == "shutdown_reply":
                return bool(msg["content"].get("restart"))
            if msg is None and not await self.is_alive():
                return True
        return None

    def _stuck_on(self, msg_id: str) -> None:
        """The kernel is busy with ``msg_id`` and ignored the interrupt: refuse new work
        until it goes idle (watched here) or restarts (``restarted``; the server drops a
        restarted kernel's executor)."""
        self.stuck = msg_id
        self._watcher = asyncio.ensure_future(self._watch_stuck(msg_id))

    async def _watch_stuck(self, msg_id: str) -> None:
        try:
            while not self._closed:
                try:
                    msg = await self._next_message(POLL_SECONDS * 5)
                except DeadKernelError:
                    return  # restarted: the executor is not reused
                if msg is None:
                    if not await self.is_alive():
                        return
                    continue
                if (
                    msg["parent_header"].get("msg_id") == msg_id
                    and msg["msg_type"] == "status"
                    and msg["content"].get("execution_state") == "idle"
                ):
                    log.info("the kernel finished the code that ignored the interrupt")
                    self.stuck = None
                    return
        except Exception as exc:  # a closed client: nothing more to watch
            log.debug("watching a busy kernel: %s", exc)

