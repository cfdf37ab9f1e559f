"""Per-block overhead of the magic's executor against the kernel executor (prints numbers).

``python -m tests.bench_inprocess``: the same small block run 50 times by
InProcessExecutor inline, by InProcessExecutor through the shell-thread queue (as the
magic runs it, the agent on another thread), and by KernelExecutor on a fresh kernel.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time

from IPython.core.interactiveshell import InteractiveShell

from jupyter_deepanalyze.execution.inprocess import InProcessExecutor, ShellThreadQueue
from jupyter_deepanalyze.execution.kernel import KernelExecutor

BLOCKS = 50
CODE = "total = sum(range(1000))\nprint(total)"


async def timed(executor: InProcessExecutor | KernelExecutor) -> list[float]:
    times = []
    for _ in range(BLOCKS):
        started = time.perf_counter()
        await executor.execute(CODE)
        times.append(time.perf_counter() - started)
    return times


def report(name: str, times: list[float]) -> None:
    p90 = sorted(times)[int(len(times) * 0.9)]
    print(f"{name:30s} median {statistics.median(times) * 1000:6.2f} ms   p90 {p90 * 1000:6.2f} ms")


async def kernel_times() -> list[float]:
    kernel = await KernelExecutor.start(cwd=tempfile.mkdtemp())
    try:
        return await timed(kernel)
    finally:
        await kernel.shutdown()


def main() -> None:
    shell = InteractiveShell.instance()
    report("in-process, inline", asyncio.run(timed(InProcessExecutor(shell))))
    queue = ShellThreadQueue()
    executor = InProcessExecutor(shell, queue=queue)
    box: dict[str, list[float]] = {}
    worker = threading.Thread(target=lambda: box.setdefault("times", asyncio.run(timed(executor))))
    worker.start()
    while worker.is_alive():
        queue.pump(0.1)
    report("in-process, via the queue", box["times"])
    report("kernel executor", asyncio.run(kernel_times()))


if __name__ == "__main__":
    main()
