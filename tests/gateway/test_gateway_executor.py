"""KernelExecutor on kernels of a real Jupyter Kernel Gateway, through its websocket."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from jupyter_deepanalyze.execution import DeadKernelError
from jupyter_deepanalyze.execution.gateway import GatewayEndpoint, GatewayError
from jupyter_deepanalyze.execution.kernel import KernelExecutor

from ..conftest import RunningGateway


@pytest.fixture
async def executor(kernel_gateway: RunningGateway) -> AsyncIterator[KernelExecutor]:
    executor = await KernelExecutor.start_on_gateway(kernel_gateway.endpoint)
    yield executor
    await executor.shutdown()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def test_outputs_state_and_counts_come_back_over_the_websocket(executor: KernelExecutor) -> None:
    first = await executor.execute("x = 41\nprint('set')")
    second = await executor.execute("x + 1")
    assert (first.status, first.feedback, first.execution_count) == ("ok", "set\n", 1)
    assert second.outputs == [
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}, "execution_count": 2}
    ]
    figure = await executor.execute("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    assert any("image/png" in o.get("data", {}) for o in figure.outputs)
    assert figure.feedback.startswith("[figure 1: ")


async def test_errors_have_the_reference_form(executor: KernelExecutor) -> None:
    result = await executor.execute("print('before')\nitems = {}\nitems['missing']")
    assert result.status == "error"
    assert result.feedback == (
        "before\n[Error]:\nTraceback (most recent call last):\n"
        '  File "<string>", line 3, in <module>\n'
        "    items['missing']\n"
        "KeyError: 'missing'"
    )


async def test_timeout_interrupts_through_the_gateway_and_keeps_state(executor: KernelExecutor) -> None:
    await executor.execute("kept = 'still here'")
    result = await executor.execute("import time\nprint('working')\nwhile True:\n    time.sleep(0.05)", timeout=1.0)
    assert result.status == "timeout"
    assert "KeyboardInterrupt" in str(result.outputs)
    assert (await executor.execute("print(kept)")).feedback == "still here\n"


async def test_cancel_interrupts_the_remote_kernel_within_two_seconds(executor: KernelExecutor) -> None:
    await executor.execute("kept = 1")
    working = asyncio.Event()
    task = asyncio.ensure_future(
        executor.execute(
            "import time\nprint('working', flush=True)\nwhile True:\n    time.sleep(0.05)",
            on_output=lambda output: working.set(),
        )
    )
    await asyncio.wait_for(working.wait(), 30)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started <= 2.0
    assert (await executor.execute("print(kept + 1)")).feedback == "2\n"


async def test_a_killed_kernel_is_reported_dead(executor: KernelExecutor) -> None:
    pid = int((await executor.execute("import os\nprint(os.getpid())")).feedback)
    task = asyncio.ensure_future(executor.execute("import time\ntime.sleep(60)"))
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(DeadKernelError):
        await asyncio.wait_for(task, 30)


async def test_a_long_quiet_execution_is_not_a_dead_connection(kernel_gateway: RunningGateway) -> None:
    # The handshake timeout (here 1 s) must not become the socket's read timeout.
    endpoint = replace(kernel_gateway.endpoint, connect_timeout=1.0)
    async with await KernelExecutor.start_on_gateway(endpoint) as executor:
        result = await executor.execute("import time\ntime.sleep(2.5)\nprint('awake')")
        assert (result.status, result.feedback) == ("ok", "awake\n")


async def test_waiting_on_a_remote_kernel_does_not_spin_the_event_loop(executor: KernelExecutor) -> None:
    cpu = _cpu_seconds()
    result = await executor.execute("import time\ntime.sleep(3)")
    assert result.status == "ok"
    assert _cpu_seconds() - cpu < 0.6  # a busy-waiting client burns most of the 3 s


async def test_an_execution_round_trip_does_not_wait_on_delayed_acks(executor: KernelExecutor) -> None:
    # The gateway writes without TCP_NODELAY: unless the client acknowledges at once, each
    # execution stalls ~40 ms (Nagle's algorithm against delayed ACKs), even the fastest one.
    await executor.execute("pass")
    fastest = float("inf")
    for _ in range(15):
        started = time.perf_counter()
        await executor.execute("pass")
        fastest = min(fastest, time.perf_counter() - started)
    assert fastest < 0.025


async def test_a_wrong_token_is_a_clear_error(kernel_gateway: RunningGateway) -> None:
    wrong = GatewayEndpoint(kernel_gateway.url, token="not-the-token")
    with pytest.raises(GatewayError, match="refused the token"):
        await KernelExecutor.start_on_gateway(wrong)


async def test_an_unreachable_gateway_is_a_clear_error() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(GatewayError, match="cannot reach the kernel gateway"):
        await KernelExecutor.start_on_gateway(GatewayEndpoint(f"http://127.0.0.1:{port}"))


def test_a_malformed_gateway_url_is_refused() -> None:
    with pytest.raises(GatewayError, match="http://host:port"):
        GatewayEndpoint("localhost:8888")
