"""``KernelExecutor``: run the model's code in a Jupyter kernel and collect what it shows.

Owns one async jupyter_client client on a kernel it started itself or attached to
(connection info, or a server's kernel manager): executions serialized per executor,
nbformat outputs streamed as they arrive, a per-execution timeout that interrupts the
kernel and leaves it usable, and a dead or restarted kernel reported as
``DeadKernelError`` (never a hang).

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
from nbformat.v4 import output_from_msg

from ..outputs import append_output, dropped_stream_note, stream_text
from ..protocol import ExecutionError, FeedbackOptions, format_feedback, strip_ansi
from . import DeadKernelError, ExecutionFailure, ExecutionResult, OutputCallback
from .gateway import GatewayEndpoint, GatewayKernel

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
"""How often a quiet execution checks that its kernel is still alive."""
DEAD_AFTER_SECONDS = 1.5
"""A kernel that fails every liveness check for this long is dead (heartbeats can lag)."""
INTERRUPT_GRACE_SECONDS = 10.0
"""How long a timed-out execution may take to stop after the interrupt."""
CANCEL_GRACE_SECONDS = 1.5
"""How long a cancelled execution waits for the kernel to settle (cancel ends in < 2 s)."""
STREAM_FLUSH_SECONDS = 0.1
"""Stream text is forwarded at most this often: a print loop does not flood the sinks."""
MAX_STREAM_CHARS = 2_000_000
"""Stream text kept per execution; the rest is counted and dropped."""

_OUTPUT_TYPES = frozenset({"stream", "display_data", "execute_result", "error"})


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _OutputCollector:
    """Merges stream chunks, forwards outputs to ``on_output`` and caps stream size."""

    def __init__(self, on_output: OutputCallback | None, max_stream_chars: int) -> None:
        self.outputs: list[dict[str, Any]] = []
        self._on_output = on_output
        self._max_stream_chars = max_stream_chars
        self._pending: dict[str, Any] | None = None
        self._last_flush = time.monotonic()
        self._stream_chars = 0
        self._dropped = 0

    async def add(self, output: dict[str, Any]) -> None:
        if output.get("output_type") != "stream":
            await self.flush()
            await self._emit(output)
            return
        text = stream_text(output)
        room = self._max_stream_chars - self._stream_chars
        if len(text) > room:
            self._dropped += len(text) - max(room, 0)
            text = text[: max(room, 0)]
        if not text:
            return
        self._stream_chars += len(text)
        if self._pending is not None and self._pending["name"] != output["name"]:
            await self.flush()
        if self._pending is None:
            self._pending = {"output_type": "stream", "name": output["name"], "text": text}
        else:
            self._pending["text"] += text
        if time.monotonic() - self._last_flush >= STREAM_FLUSH_SECONDS:
            await self.flush()

    async def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await self._emit(pending)

    async def finish(self) -> None:
        await self.flush()
        if self._dropped:
            await self._emit(dropped_stream_note(self._dropped))
            self._dropped = 0

    async def _emit(self, output: dict[str, Any]) -> None:
        append_output(self.outputs, output)
        if self._on_output is not None:
            await _maybe_await(self._on_output(output))


class KernelExecutor:
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
        self.feedback = feedback or FeedbackOptions()
        self.max_stream_chars = max_stream_chars
        self._interrupter = interrupter
        self._lock = asyncio.Lock()
        self._kernel_pid = self._pid()
        self._closed = False

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
        """Start a new kernel (owned by the executor) in ``cwd``.

        ``transport="ipc"`` (the default) talks over Unix sockets in the Jupyter runtime
        directory: no TCP port is opened and nothing else on the host can connect.
        """
        manager = AsyncKernelManager(kernel_name=kernel_name, transport=transport)
        if transport == "ipc":
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(parents=True, exist_ok=True)
            manager.ip = str(runtime / f"deepanalyze-{uuid.uuid4().hex[:12]}")
        kernel_env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", **(env or {})}
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
        if self._closed:
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
        async with self._lock:
            return await self._execute(code, timeout, on_output)

    async def execute_silent(
        self, code: str, user_expressions: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Run bookkeeping code without touching history or the execution count.

        Returns the ``execute_reply`` content (``user_expressions`` results included).
        """
        async with self._lock:
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
        collector = _OutputCollector(on_output, self.max_stream_chars)
        msg_id = self.client.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        deadline = started + timeout if timeout else None
        timed_out = False
        execution_count: int | None = None
        try:
            while True:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    if timed_out:
                        await self._unresponsive(timeout or 0.0)  # raises
                    timed_out = True
                    log.info("execution exceeded %ss; interrupting the kernel", timeout)
                    await self.interrupt()
                    deadline = now + INTERRUPT_GRACE_SECONDS
                wait = POLL_SECONDS if deadline is None else max(0.01, min(POLL_SECONDS, deadline - now))
                msg = await self._next_message(wait, collector)
                if msg is None or msg["parent_header"].get("msg_id") != msg_id:
                    continue
                msg_type = msg["msg_type"]
                content = msg["content"]
                if msg_type == "status" and content.get("execution_state") == "idle":
                    break
                if msg_type in ("execute_input", "execute_result"):
                    execution_count = content.get("execution_count", execution_count)
                if msg_type in _OUTPUT_TYPES:
                    await collector.add(output_from_msg(msg))
        except asyncio.CancelledError:
            await self._settle_after_cancel(msg_id)
            raise
        finally:
            await collector.finish()
        reply = await self._reply(msg_id, timeout=5.0, required=False)
        if reply.get("execution_count") is not None:
            execution_count = reply["execution_count"]
        outputs = collector.outputs
        error = next(
            (
                ExecutionError(o["ename"], strip_ansi(o["evalue"]), tuple(o.get("traceback", ())))
                for o in outputs
                if o.get("output_type") == "error"
            ),
            None,
        )
        if error is None and reply.get("status") == "error":
            error = ExecutionError(reply.get("ename", "Error"), reply.get("evalue", ""), tuple(reply.get("traceback", ())))
        if error is None and reply.get("status") == "aborted":
            error = ExecutionError("ExecutionAborted", "the kernel aborted this execution")
        status = "timeout" if timed_out else ("error" if error is not None else "ok")
        feedback = format_feedback(
            code,
            outputs,
            error=error,
            timeout=timeout if timed_out else None,
            options=self.feedback,
        )
        return ExecutionResult(
            status=status,
            outputs=outputs,
            execution_count=execution_count,
            feedback=feedback,
            error=error,
            duration=loop.time() - started,
        )

    async def _next_message(self, wait: float, collector: _OutputCollector) -> dict[str, Any] | None:
        """The next iopub message, or None after ``wait`` seconds (liveness checked then)."""
        try:
            msg = await self.client.get_iopub_msg(timeout=wait)
        except queue.Empty:
            await collector.flush()
            await self._check_alive()
            return None
        if (
            msg["msg_type"] == "status"
            and msg["content"].get("execution_state") in ("starting", "restarting", "dead")
        ):
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

    async def _settle_after_cancel(self, msg_id: str) -> None:
        """Interrupt the cancelled execution and give the kernel a moment to go idle."""
        try:
            await asyncio.wait_for(self._interrupt_until_idle(msg_id), CANCEL_GRACE_SECONDS)
        except (asyncio.TimeoutError, ExecutionFailure) as exc:
            log.debug("kernel still busy after cancel: %s", exc)

    async def _interrupt_until_idle(self, msg_id: str) -> None:
        await self.interrupt()
        while True:
            try:
                msg = await self.client.get_iopub_msg(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"].get("execution_state") == "idle"
            ):
                return

    async def _unresponsive(self, timeout: float) -> None:
        """The kernel ignored the interrupt: restart it if it is ours, else give up."""
        if self.manager is None:
            raise ExecutionFailure(
                f"the code ran past {timeout:g} s and the kernel ignored the interrupt"
            )
        log.warning("kernel ignored the interrupt; restarting it")
        await self.manager.restart_kernel(now=True)
        self._kernel_pid = self._pid()
        await self.client.wait_for_ready(timeout=60)
        raise DeadKernelError(
            f"the code ran past {timeout:g} s and ignored the interrupt; the kernel was restarted"
        )
