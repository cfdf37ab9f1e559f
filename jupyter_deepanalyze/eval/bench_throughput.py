"""The bench's eval-throughput measurements: the real eval runner on scripted table-QA tasks.

Owns measurement (3) of ``jupyter deepanalyze bench`` — tasks per minute at each
concurrency level, local kernels — and measurement (5): the same tasks at the same
concurrency with local kernels and with kernels on a Jupyter kernel gateway (files
shipped through the kernels), and the median round trip of a trivial execution on one
warm kernel of each kind, interleaved, whose difference is what the websocket path adds
per execution. The gateway is the one named by ``--gateway-url``, or a Jupyter Kernel
Gateway started on 127.0.0.1 for the measurement.

Must not be imported by the agent or any front door other than the CLI's ``bench``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import DeepAnalyze
from ..execution.gateway import GatewayEndpoint
from ..execution.kernel import KernelExecutor
from ..execution.local_gateway import INSTALL_HINT, LocalGateway
from ..llm.openai_compat import OpenAICompatModel
from .benchmarks import TableQA
from .runner import EvalRunner

PASS_CODE = "pass"


@dataclass
class Throughput:
    concurrency: int
    tasks: int
    tasks_per_min: float
    tasks_wall_s: float
    pool_start_s: float
    accuracy: float


@dataclass
class GatewayOverhead:
    """Measurement (5); ``skipped`` says why it was not taken."""

    gateway: str = ""
    concurrency: int = 0
    tasks: int = 0
    local_tasks_per_min: float = 0.0
    gateway_tasks_per_min: float = 0.0
    local_accuracy: float = 0.0
    gateway_accuracy: float = 0.0
    samples: int = 0
    local_execution_ms: float = 0.0
    gateway_execution_ms: float = 0.0
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.skipped is None:
            data["websocket_overhead_ms"] = round(self.gateway_execution_ms - self.local_execution_ms, 3)
            data["gateway_over_local_throughput"] = (
                round(self.gateway_tasks_per_min / self.local_tasks_per_min, 3) if self.local_tasks_per_min else None
            )
        return data

    def render(self) -> list[str]:
        if self.skipped is not None:
            return ["", f"(5) kernels on a gateway: not measured ({self.skipped})"]
        ratio = self.gateway_tasks_per_min / self.local_tasks_per_min if self.local_tasks_per_min else float("nan")
        return [
            "",
            f"(5) kernels on a gateway ({self.gateway}) vs local kernels, concurrency {self.concurrency}, "
            f"{self.tasks} tasks",
            f"    eval throughput: local {self.local_tasks_per_min:.1f} tasks/min, gateway "
            f"{self.gateway_tasks_per_min:.1f} tasks/min ({ratio:.2f}x; accuracy {self.local_accuracy:.0%} / "
            f"{self.gateway_accuracy:.0%})",
            f"    per execution ('{PASS_CODE}', median of {self.samples} interleaved): local "
            f"{self.local_execution_ms:.2f} ms, gateway {self.gateway_execution_ms:.2f} ms "
            f"(websocket path {self.gateway_execution_ms - self.local_execution_ms:+.2f} ms)",
        ]


@contextlib.contextmanager
def _gateway(url: str | None, token: str) -> Iterator[GatewayEndpoint]:
    if url:
        yield GatewayEndpoint(url, token=token)
        return
    with LocalGateway() as local:
        yield local.endpoint


def gateway_unavailable(url: str | None) -> str | None:
    """Why the row cannot be measured here, or None."""
    if url or importlib.util.find_spec("kernel_gateway") is not None:
        return None
    return f"no --gateway-url and no local Jupyter Kernel Gateway: {INSTALL_HINT}"


async def _round_trip_ms(executor: KernelExecutor) -> float:
    started = time.perf_counter()
    result = await executor.execute(PASS_CODE, timeout=120)
    if result.status != "ok":
        raise RuntimeError(f"the kernel failed: {result.feedback[-300:]}")
    return (time.perf_counter() - started) * 1000


async def _eval(
    model: OpenAICompatModel, benchmark: TableQA, out: Path, concurrency: int, kernel: str, config: DeepAnalyze
) -> dict[str, Any]:
    """One run of the real eval runner over every task; its summary."""
    runner = EvalRunner(
        benchmark, benchmark.tasks, config=config, model=model, out=out, concurrency=concurrency, kernel_name=kernel
    )
    return await runner.run()


async def measure_throughput(
    model: OpenAICompatModel,
    benchmark: TableQA,
    folder: Path,
    *,
    concurrency: tuple[int, ...],
    kernel: str,
    log: Callable[[str], None],
) -> list[Throughput]:
    """Measurement (3): local kernels at each concurrency level."""
    results = []
    for level in concurrency:
        log(f"(3) eval throughput: {len(benchmark.tasks)} tasks at concurrency {level}")
        summary = await _eval(model, benchmark, folder / f"eval-c{level}", level, kernel, DeepAnalyze(max_rounds=10))
        timings = summary["timings"]
        results.append(
            Throughput(
                concurrency=level,
                tasks=summary["n"],
                tasks_per_min=round(timings["tasks_per_min"] or 0.0, 2),
                tasks_wall_s=round(timings["tasks_wall_s"], 3),
                pool_start_s=round(timings["pool_start_s"], 3),
                accuracy=summary["accuracy"],
            )
        )
    return results


async def measure_gateway(
    model: OpenAICompatModel,
    benchmark: TableQA,
    folder: Path,
    *,
    concurrency: int,
    repeat: int,
    kernel: str,
    gateway_url: str | None,
    gateway_token: str,
    log: Callable[[str], None],
) -> GatewayOverhead:
    """Measurement (5): local kernels against kernels on a gateway, side by side."""
    reason = gateway_unavailable(gateway_url)
    if reason is not None:
        return GatewayOverhead(skipped=reason)
    with _gateway(gateway_url, gateway_token) as endpoint:
        row = GatewayOverhead(gateway=endpoint.url, concurrency=concurrency, samples=repeat)
        log(f"(5) per-execution round trip, local vs gateway kernel: {repeat} samples each")
        samples: dict[str, list[float]] = {"local": [], "gateway": []}
        local = await KernelExecutor.start(kernel, cwd=folder)
        try:
            remote = await KernelExecutor.start_on_gateway(endpoint, kernel)
            try:
                await _round_trip_ms(local)  # warm up both
                await _round_trip_ms(remote)
                for index in range(repeat):
                    order = [("local", local), ("gateway", remote)]
                    for name, executor in order if index % 2 else order[::-1]:
                        samples[name].append(await _round_trip_ms(executor))
            finally:
                await remote.shutdown()
        finally:
            await local.shutdown()
        row.local_execution_ms = round(statistics.median(samples["local"]), 3)
        row.gateway_execution_ms = round(statistics.median(samples["gateway"]), 3)
        for where in ("local", "gateway"):
            log(f"(5) eval throughput on {where} kernels: {len(benchmark.tasks)} tasks at concurrency {concurrency}")
            config = DeepAnalyze(max_rounds=10)
            if where == "gateway":
                config.gateway_url, config.gateway_token = endpoint.url, endpoint.token
            out = folder / f"eval-{where}-c{concurrency}"
            summary = await _eval(model, benchmark, out, concurrency, kernel, config)
            per_min = round(summary["timings"]["tasks_per_min"] or 0.0, 2)
            row.tasks = summary["n"]
            if where == "local":
                row.local_tasks_per_min, row.local_accuracy = per_min, summary["accuracy"]
            else:
                row.gateway_tasks_per_min, row.gateway_accuracy = per_min, summary["accuracy"]
    return row
