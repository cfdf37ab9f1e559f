"""``KernelExecutor``: run the model's code in a Jupyter kernel and collect what it shows.

Owns one async jupyter_client client on a kernel it started itself (here, or on a kernel
gateway) or attached to (connection info, or a client from a server's kernel manager:
ZMQ, or a gateway's websocket): executions serialized per executor,
nbformat outputs streamed as they arrive, a per-execution timeout that interrupts the
kernel and leaves it usable, a dead, restarted or shut-down kernel reported as
``DeadKernelError`` (never a hang, and never as the ``KeyboardInterrupt`` a restart
sends first), and a kernel still busy with code that ignored the interrupt reported as
``KernelUnresponsive`` — at once for every later execution, until the kernel is idle
again (watched in the background) or restarted (``stopping.KernelStopping``).

Must not swallow kernel death.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import queue
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from jupyter_client import AsyncKernelClient, AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir

from ..config import SECRET_ENVIRONMENT, default_feedback_options
from ..feedback import ExecutionError, FeedbackOptions, format_feedback, strip_ansi
from ..outputs import OutputAccumulator, OutputSync
from . import DeadKernelError, ExecutionFailure, ExecutionResult, KernelUnresponsive, OutputCallback
from .gateway import GatewayEndpoint, GatewayKernel
from .parity import ParityRun
from .snapshots import SNAPSHOT_TIMEOUT, FolderSnapshot, SnapshotError, snapshot_expression, snapshot_from_reply
from .stopping import (
    POLL_SECONDS,
    RESTART_HINT,
    RESTARTED,
    SHUT_DOWN,
    KernelStopping,
)

log = logging.getLogger(__name__)

DEAD_AFTER_SECONDS = 1.5
"""A kernel that fails every liveness check for this long is dead (heartbeats can lag)."""
INTERRUPT_GRACE_SECONDS = 10.0
"""How long a timed-out execution may take to stop after the interrupt."""
SYNC_SECONDS = 0.1
"""Output changes are forwarded at most this often: a print or progress loop does not
flood the sinks (what it shows between two syncs is sent as one change)."""
MAX_STREAM_CHARS = 2_000_000
"""Stream text kept per execution (its head and its latest part); the rest is cut and noted."""


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _Forwarder:
    """Sends ``on_output`` what changed in ``outputs``, at most every ``SYNC_SECONDS``."""

    def __init__(self, outputs: OutputAccumulator, on_output: OutputCallback | None) -> None:
        self.sync = OutputSync(outputs)
        self.on_output = on_output
        self.last_sent = float("-inf")

    def due_in(self) -> float:
        """Seconds until what changed should be sent (infinite when nothing did)."""
        if not self.sync.pending:
            return float("inf")
        return self.last_sent + SYNC_SECONDS - time.monotonic()

    async def send(self) -> None:
        self.last_sent = time.monotonic()
        for change in self.sync.changes():
            if self.on_output is not None:
                await _maybe_await(self.on_output(change))


class KernelExecutor(KernelStopping):
    """Executes code blocks in one Jupyter kernel, one at a time.

    Build it with :meth:`start` (a new kernel this executor owns) or :meth:`attach`
    (an existing kernel, e.g. the notebook's). ``interrupter`` lets a Jupyter server
    interrupt through its own kernel manager; without it an attached kernel gets an
    ``interrupt_request`` on the control channel.
    """

    def __init__(
        self,
        client: AsyncKernelClient,
        *,
        manager: AsyncKernelManager | None = None,
        interrupter: Callable[[], Awaitable[Any]] | None = None,
        feedback: FeedbackOptions | None = None,
        max_stream_chars: int = MAX_STREAM_CHARS,
        kernel_id: str | None = None,
    ) -> None:
        self.client = client
        self.manager = manager
        self.kernel_id = kernel_id
        self.feedback = feedback or default_feedback_options()
        self.max_stream_chars = max_stream_chars
        self._interrupter = interrupter
        self._lock = asyncio.Lock()
        self._kernel_pid = self._pid()
        self._closed = False
        self.stuck: str | None = None
        """The id of an execution the kernel is still busy with after this executor gave up
        on it (it ignored the interrupt); None when the kernel can take new work."""
        self._watcher: asyncio.Task[None] | None = None
        self._lists_files = True
        self.restarted = False
        """The kernel was seen restarting: its state is gone and this executor is not reused."""

    # ------------------------------------------------------------------ construction

    @classmethod
    async def start(
        cls,
        kernel_name: str = "python3",
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        transport: str = "ipc",
        **options: Any,
    ) -> KernelExecutor:
        """Start a new kernel (owned by the executor) in ``cwd``, with this process's
        environment less its secrets (``config.SECRET_ENVIRONMENT``) and plus ``env``.

        ``transport="ipc"`` (the default) talks over Unix sockets in the Jupyter runtime
        directory: no TCP port is opened and nothing else on the host can connect.
        """
        manager = AsyncKernelManager(kernel_name=kernel_name, transport=transport)
        if transport == "ipc":
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(parents=True, exist_ok=True)
            manager.ip = str(runtime / f"deepanalyze-{uuid.uuid4().hex[:12]}")
        inherited = {name: value for name, value in os.environ.items() if name not in SECRET_ENVIRONMENT}
        kernel_env = {**inherited, "PYDEVD_DISABLE_FILE_VALIDATION": "1", **(env or {})}
        try:
            await manager.start_kernel(cwd=str(cwd) if cwd else None, env=kernel_env)
        except Exception as exc:  # no such kernel spec, bad cwd, …
            raise ExecutionFailure(f"could not start the {kernel_name!r} kernel: {exc}") from exc
        client = manager.client()
        client.start_channels()
        executor = cls(client, manager=manager, **options)
        try:
            await client.wait_for_ready(timeout=startup_timeout)
        except RuntimeError as exc:
            await executor.shutdown()
            raise DeadKernelError(f"the {kernel_name!r} kernel did not start: {exc}") from exc
        executor._kernel_pid = executor._pid()
        return executor

    @classmethod
    async def attach(
        cls,
        connection_info: Mapping[str, Any] | str | Path,
        *,
        ready_timeout: float = 30.0,
        **options: Any,
    ) -> KernelExecutor:
        """Attach to a running kernel with its own client (never a shared one)."""
        client = AsyncKernelClient()
        if isinstance(connection_info, Mapping):
            client.load_connection_info(dict(connection_info))
        else:
            client.load_connection_file(str(connection_info))
        return await cls.connect(client, ready_timeout=ready_timeout, **options)

    @classmethod
    async def connect(
        cls,
        client: AsyncKernelClient,
        *,
        ready_timeout: float = 30.0,
        **options: Any,
    ) -> KernelExecutor:
        """Start ``client``'s channels (ZMQ, or a gateway's websocket) and wait for the kernel.

        With ``manager=`` the executor owns that kernel (it shuts it down with itself).
        """
        executor = cls(client, **options)
        try:
            await _maybe_await(client.start_channels())
            await client.wait_for_ready(timeout=ready_timeout)
        except RuntimeError as exc:  # DeadKernelError and GatewayError included
            await executor.shutdown()
            if isinstance(exc, ExecutionFailure):
                raise
            raise DeadKernelError(f"the kernel does not answer: {exc}") from exc
        except BaseException:  # cancelled while a busy kernel had not answered yet
            await executor.shutdown()
            raise
        executor._kernel_pid = executor._pid()
        return executor

    @classmethod
    async def start_on_gateway(
        cls,
        endpoint: GatewayEndpoint,
        kernel_name: str = "python3",
        *,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        **options: Any,
    ) -> KernelExecutor:
        """Start a new kernel (owned by the executor) on a kernel gateway.

        Its working directory is the gateway's choice; ``env`` reaches the kernel only
        for the variables the gateway passes on (``KERNEL_*`` and those it allows).
        """
        from .gateway_channels import GatewayChannelsClient

        kernel = await GatewayKernel.start(endpoint, kernel_name, env)
        client = GatewayChannelsClient(kernel.kernel_id, endpoint=endpoint, rest=kernel.rest)
        return await cls.connect(client, manager=kernel, ready_timeout=startup_timeout, **options)

    # ------------------------------------------------------------------------ state

    def _pid(self) -> int | None:
        provisioner = getattr(self.manager, "provisioner", None) if self.manager else None
        return getattr(provisioner, "pid", None) if provisioner else None

    async def is_alive(self) -> bool:
        if self._closed or self.restarted:
            return False
        if self.manager is not None:
            if self._pid() != self._kernel_pid:  # restarted behind our back
                return False
            return bool(await self.manager.is_alive())
        return bool(await _maybe_await(self.client.is_alive()))

    async def interrupt(self) -> None:
        """Interrupt whatever the kernel runs now (KeyboardInterrupt in the code)."""
        if self.manager is not None:
            await self.manager.interrupt_kernel()
        elif self._interrupter is not None:
            await _maybe_await(self._interrupter())
        else:
            message = self.client.session.msg("interrupt_request", {})
            self.client.control_channel.send(message)

    async def shutdown(self) -> None:
        """Close the channels; shut the kernel down if this executor started it."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        if self.client.channels_running:
            self.client.stop_channels()
        if self.manager is not None:
            try:
                await self.manager.shutdown_kernel(now=True)
            except Exception as exc:  # already gone
                log.debug("kernel shutdown: %s", exc)

    async def __aenter__(self) -> KernelExecutor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # -------------------------------------------------------------------- execution

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``code`` as a notebook cell would (history stored, counted).

        Returns status ``ok``, ``error`` or ``timeout``; raises ``DeadKernelError`` when
        the kernel dies or restarts. If the calling task is cancelled, the kernel is
        interrupted before the cancellation propagates.
        """
        if self._closed:
            raise DeadKernelError("the kernel executor is shut down")
        self.check_responsive()
        async with self._lock:
            self.check_responsive()
            return await self._execute(code, timeout, on_output)

    async def execute_silent(
        self, code: str, user_expressions: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Run bookkeeping code without touching history or the execution count.

        Returns the ``execute_reply`` content (``user_expressions`` results included).
        """
        self.check_responsive()
        async with self._lock:
            return await self._silent(code, user_expressions, timeout)

    async def snapshot_files(self, folder: str | None = None) -> FolderSnapshot | None:
        """The files under ``folder`` (the kernel's working directory by default), listed by
        the kernel itself (``snapshots``); None when it cannot say (a kernel that is not
        Python stops being asked)."""
        if not self._lists_files:
            return None
        try:
            self.check_responsive()
            async with self._lock:
                reply = await self._silent("", {"snapshot": snapshot_expression(folder)}, SNAPSHOT_TIMEOUT)
            return snapshot_from_reply(reply)
        except SnapshotError as exc:
            log.info("the kernel cannot list its folder; files written are not reported: %s", exc)
            self._lists_files = False
        except ExecutionFailure as exc:  # busy past the timeout, or dead: the block will tell
            log.debug("no folder snapshot: %s", exc)
        return None

    async def _silent(
        self, code: str, user_expressions: Mapping[str, str] | None, timeout: float
    ) -> dict[str, Any]:
        msg_id = self.client.execute(
            code,
            silent=True,
            store_history=False,
            user_expressions=dict(user_expressions or {}),
            allow_stdin=False,
            stop_on_error=False,
        )
        return await self._reply(msg_id, timeout)

    async def _execute(
        self, code: str, timeout: float | None, on_output: OutputCallback | None
    ) -> ExecutionResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        outputs = OutputAccumulator(stream_limit=self.max_stream_chars)
        forward = _Forwarder(outputs, on_output)
        parity = ParityRun(code) if self.feedback.parity else None
        msg_id = self.client.execute(
            parity.source if parity else code,
            store_history=True,
            allow_stdin=False,
            stop_on_error=False,
            user_expressions=parity.user_expressions if parity else None,
        )
        deadline = started + timeout if timeout else None
        timed_out = False
        going_down: bool | None = None  # a shutdown_reply was seen: restart (True) or shutdown
        execution_count: int | None = None
        try:
            while True:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    if timed_out:
                        await self._unresponsive(timeout or 0.0, msg_id)  # raises
                    timed_out = True
                    log.info("execution exceeded %ss; interrupting the kernel", timeout)
                    await self.interrupt()
                    deadline = now + INTERRUPT_GRACE_SECONDS
                if forward.due_in() <= 0:
                    await forward.send()
                wait = POLL_SECONDS if deadline is None else max(0.01, min(POLL_SECONDS, deadline - now))
                msg = await self._next_message(min(wait, forward.due_in()))
                if msg is None:  # quiet: send what is new, check the kernel lives
                    await forward.send()
                    await self._check_alive()
                    continue
                if msg["msg_type"] == "shutdown_reply":  # whoever asked: the kernel is going down
                    going_down = bool(msg["content"].get("restart"))
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                msg_type = msg["msg_type"]
                content = msg["content"]
                if msg_type == "status" and content.get("execution_state") == "idle":
                    break
                if msg_type in ("execute_input", "execute_result"):
                    execution_count = content.get("execution_count", execution_count)
                outputs.handle(msg_type, content)
        except asyncio.CancelledError:
            if not await self._settle_after_cancel(msg_id, outputs, forward):
                self._stuck_on(msg_id)
                raise KernelUnresponsive(
                    "the kernel did not stop: the running code ignores interrupts (it catches "
                    "KeyboardInterrupt) and the kernel is still busy with it. " + RESTART_HINT
                ) from None
            raise
        finally:
            outputs.finish()
            await forward.send()
        reply = await self._reply(msg_id, timeout=5.0, required=False)
        if reply.get("execution_count") is not None:
            execution_count = reply["execution_count"]
        parity_value = ParityRun.value_from_reply(reply) if parity else None
        if parity and (shown := parity.error_output(parity_value)) is not None:
            outputs.add(shown)  # the block's own error, in the cell
            await forward.send()
        error = next(
            (ExecutionError(o["ename"], strip_ansi(o["evalue"]), tuple(o["traceback"])) for o in outputs.errors),
            None,
        )
        if error is None and reply.get("status") == "error":
            error = ExecutionError(
                reply.get("ename", "Error"), reply.get("evalue", ""), tuple(reply.get("traceback", ()))
            )
        if error is None and reply.get("status") == "aborted":
            error = ExecutionError("ExecutionAborted", "the kernel aborted this execution")
        if going_down is None and not timed_out and error is not None and error.ename == "KeyboardInterrupt":
            going_down = await self._going_down()  # an interrupt we did not send: a restart's?
        if going_down is not None:
            self.restarted = True
            raise DeadKernelError(RESTARTED if going_down else SHUT_DOWN)
        status = "timeout" if timed_out else ("error" if error is not None else "ok")
        # What the model is told comes from what is left in the cell (after any clear_output).
        feedback = format_feedback(
            code,
            outputs.outputs,
            error=error,
            timeout=timeout if timed_out else None,
            options=self.feedback,
        )
        result = ExecutionResult(
            status=status,
            outputs=outputs.outputs,
            execution_count=execution_count,
            feedback=feedback,
            error=error,
            duration=loop.time() - started,
        )
        return parity.result(result, parity_value) if parity else result

    async def _next_message(self, wait: float) -> dict[str, Any] | None:
        """The next iopub message, or None after ``wait`` seconds."""
        try:
            msg = await self.client.get_iopub_msg(timeout=wait)
        except queue.Empty:
            return None
        if (
            msg["msg_type"] == "status"
            and msg["content"].get("execution_state") in ("starting", "restarting", "dead")
        ):
            self.restarted = True  # a gateway kernel has no pid to tell by later
            raise DeadKernelError("the kernel restarted during the execution; its variables are gone")
        return msg

    async def _check_alive(self) -> None:
        first_failure: float | None = None
        while not await self.is_alive():
            now = time.monotonic()
            if first_failure is None:
                first_failure = now
            elif now - first_failure >= DEAD_AFTER_SECONDS:
                raise DeadKernelError("the kernel died (was it killed or out of memory?)")
            await asyncio.sleep(0.25)

    async def _reply(self, msg_id: str, timeout: float, required: bool = True) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                if required:
                    raise ExecutionFailure("the kernel did not reply in time")
                return {}
            try:
                msg = await self.client.get_shell_msg(timeout=min(remaining, POLL_SECONDS))
            except queue.Empty:
                await self._check_alive()
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return dict(msg["content"])

    async def _unresponsive(self, timeout: float, msg_id: str) -> None:
        """The kernel ignored the interrupt: restart it if it is ours, else give up on it."""
        if self.manager is None:
            self._stuck_on(msg_id)
            raise KernelUnresponsive(
                f"the code ran past {timeout:g} s and ignored the interrupt: the kernel is still busy "
                "with it. " + RESTART_HINT
            )
        log.warning("kernel ignored the interrupt; restarting it")
        await self.manager.restart_kernel(now=True)
        self._kernel_pid = self._pid()
        await self.client.wait_for_ready(timeout=60)
        raise DeadKernelError(
            f"the code ran past {timeout:g} s and ignored the interrupt; the kernel was restarted"
        )
