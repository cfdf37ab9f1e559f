"""``jupyter deepanalyze bench``: the harness's own performance, measured side by side.

Owns four measurements, each taken in one run on this machine and printed as medians and
ratios:

1. Per-execution overhead of ``KernelExecutor`` on a warm kernel versus a fresh Python
   process per code block (how the reference's API server runs code: write a ``.py``
   file, ``subprocess.run([python, file])``), for ``pass`` and for a pandas groupby on
   10k rows, with the raw ``jupyter_client`` round trip on the same kernel as the floor.
   The three are interleaved, so load changes hit them alike.
2. Agent-loop overhead per round: a run's wall time minus the time spent waiting for the
   model (the real HTTP path to a zero-latency policy) and executing code.
3. Evaluation throughput (tasks per minute) of the real eval runner at concurrency 1
   and 2, on a synthetic table-QA set (``bench_throughput``).
4. Memory (RSS and USS) per pooled kernel, fresh and after a pandas task.
5. Kernels on a Jupyter kernel gateway against local kernels: eval throughput at the same
   concurrency and the per-execution cost of the websocket path (``bench_throughput``).

The model is ``scripted_server.py``'s OpenAI-compatible server replaying the bench's
scripted turns (``bench_policy``) on the data it writes: fixed turns, zero latency,
clearly a part of this benchmark and never a model default.

Must not be imported by the agent or any front door other than the CLI's ``bench``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from jupyter_client import AsyncKernelClient

from ..agent import Agent, Task
from ..execution.kernel import KernelExecutor
from ..execution.pool import KernelPool
from ..llm.openai_compat import OpenAICompatModel
from ..protocol import DataFile
from .bench_throughput import GatewayOverhead, Throughput, measure_gateway, measure_throughput
from .benchmarks import TableQA
from .scripted_server import CSV_NAME, SERVED_NAME, ScriptedServer, bench_policy, write_bench_csv, write_table_qa_set
from .timing import TimedExecutor, TimedModel

PASS_CODE = "pass"
GROUPBY_CODE = (
    "import pandas as pd\n"
    f"df = pd.read_csv('{CSV_NAME}')\n"
    "print(df.groupby('key')['value'].mean().round(4).head())"
)
POLICY_LABEL = (
    f"jupyter_deepanalyze.eval.scripted_server (served as {SERVED_NAME!r}): fixed turns, "
    "zero model latency, over real HTTP on 127.0.0.1 — part of this benchmark, not a model"
)


class BenchError(RuntimeError):
    """A measurement could not be taken (its code failed)."""


@dataclass
class BenchOptions:
    """How much to measure; the defaults take about a minute on two busy cores."""

    repeat: int = 50
    """Interleaved samples of each execution method per workload (1)."""
    runs: int = 10
    """Scripted agent runs of four rounds each (2)."""
    tasks: int = 16
    """Synthetic eval tasks per concurrency level (3)."""
    concurrency: tuple[int, ...] = (1, 2)
    kernel: str = "python3"
    gateway: bool = True
    """Measure kernels on a gateway (5): ``gateway_url``'s, else a local Kernel Gateway."""
    gateway_url: str = ""


# ------------------------------------------------------------------------ helpers


@dataclass
class Samples:
    """Seconds per sample; reported as the median in milliseconds."""

    seconds: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000 if self.seconds else float("nan")

    @property
    def min_ms(self) -> float:
        return min(self.seconds) * 1000 if self.seconds else float("nan")


def run_in_fresh_process(code: str, folder: Path) -> None:
    """What the reference does per code block: a temp ``.py`` run by a new interpreter."""
    handle, script = tempfile.mkstemp(suffix=".py", dir=folder)
    os.close(handle)
    try:
        Path(script).write_text(code, encoding="utf-8")
        env = {**os.environ, "MPLBACKEND": "Agg"}
        done = subprocess.run(
            [sys.executable, script], cwd=folder, capture_output=True, text=True, env=env, timeout=120
        )
    finally:
        os.unlink(script)
    if done.returncode != 0:
        raise BenchError(f"the fresh process failed: {done.stderr.strip()[-300:]}")


async def run_raw(client: AsyncKernelClient, code: str, timeout: float = 120.0) -> None:
    """The floor: ``execute_request``, then the reply on shell and ``idle`` on iopub."""
    msg_id = client.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
    while True:
        reply = await client.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    if reply["content"].get("status") != "ok":
        raise BenchError(f"the kernel failed: {reply['content'].get('evalue', '')}")
    while True:
        msg = await client.get_iopub_msg(timeout=timeout)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"].get("execution_state") == "idle"
        ):
            return


async def run_executor(executor: KernelExecutor, code: str) -> None:
    result = await executor.execute(code, timeout=120)
    if result.status != "ok":
        raise BenchError(f"the kernel failed: {result.feedback[-300:]}")


def kernel_memory(pid: int) -> tuple[float, float]:
    """(RSS, USS) of a kernel process in MiB (USS: memory only it uses)."""
    import psutil

    info = psutil.Process(pid).memory_full_info()
    return info.rss / 2**20, getattr(info, "uss", info.rss) / 2**20


# ------------------------------------------------------------------ measurements


@dataclass
class ExecutionOverhead:
    workload: str
    fresh_process: Samples
    executor: Samples
    raw_client: Samples

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "samples": len(self.executor.seconds),
            "fresh_process_ms": round(self.fresh_process.median_ms, 3),
            "kernel_executor_ms": round(self.executor.median_ms, 3),
            "raw_jupyter_client_ms": round(self.raw_client.median_ms, 3),
            "min_ms": {
                "fresh_process": round(self.fresh_process.min_ms, 3),
                "kernel_executor": round(self.executor.min_ms, 3),
                "raw_jupyter_client": round(self.raw_client.min_ms, 3),
            },
            "fresh_over_executor": round(self.fresh_process.median_ms / self.executor.median_ms, 2),
            "executor_over_raw": round(self.executor.median_ms / self.raw_client.median_ms, 3),
            "executor_minus_raw_ms": round(self.executor.median_ms - self.raw_client.median_ms, 3),
        }


@dataclass
class AgentLoop:
    runs: int
    rounds_per_run: int
    round_ms: float
    model_ms: float
    code_ms: float
    overhead_ms: float

    def to_json(self) -> dict[str, Any]:
        data = {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}
        data["overhead_share"] = round(self.overhead_ms / self.round_ms, 4) if self.round_ms else None
        return data


@dataclass
class KernelMemory:
    kernels: int
    fresh_rss_mib: float
    fresh_uss_mib: float
    used_rss_mib: float
    used_uss_mib: float


@dataclass
class BenchReport:
    environment: dict[str, Any]
    options: BenchOptions
    execution: list[ExecutionOverhead] = field(default_factory=list)
    agent_loop: AgentLoop | None = None
    throughput: list[Throughput] = field(default_factory=list)
    memory: KernelMemory | None = None
    gateway: GatewayOverhead | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "options": {**asdict(self.options), "concurrency": list(self.options.concurrency)},
            "policy": POLICY_LABEL,
            "execution_overhead": [e.to_json() for e in self.execution],
            "agent_loop": self.agent_loop.to_json() if self.agent_loop else None,
            "eval_throughput": [asdict(t) for t in self.throughput],
            "kernel_memory": asdict(self.memory) if self.memory else None,
            "gateway": self.gateway.to_json() if self.gateway else None,
        }

    def render(self) -> str:
        env = self.environment
        lines = [
            "jupyter deepanalyze bench: harness performance, each number measured side by side in this run",
            f"machine: {env['cpus']} CPUs, load average {env['load_before']} before / {env['load_after']} after; "
            f"Python {env['python']}, pandas {env['pandas']}, {env['platform']}",
            f"scripted policy: {POLICY_LABEL}",
            "",
            f"(1) per-execution overhead: {self.options.repeat} interleaved samples of each method "
            "(median, min in brackets)",
        ]
        for e in self.execution:
            j = e.to_json()
            lines.append(f"    {e.workload}")
            for label, samples in (
                ("fresh Python process per block", e.fresh_process),
                ("KernelExecutor, warm kernel", e.executor),
                ("raw jupyter_client round trip", e.raw_client),
            ):
                lines.append(f"      {label:<32}{samples.median_ms:9.2f} ms  (min {samples.min_ms:.2f})")
            lines.append(
                f"      ratios: fresh/executor {j['fresh_over_executor']:.1f}x; executor/raw "
                f"{j['executor_over_raw']:.2f}x ({j['executor_minus_raw_ms']:+.2f} ms)"
            )
        if self.agent_loop:
            a = self.agent_loop
            lines += [
                "",
                f"(2) agent loop per round: the median of {a.runs} scripted runs ({a.rounds_per_run} rounds each)",
                f"    round {a.round_ms:.2f} ms = model via HTTP {a.model_ms:.2f} ms + code {a.code_ms:.2f} ms "
                f"+ agent loop {a.overhead_ms:.2f} ms ({a.overhead_ms / a.round_ms:.1%} of the round)",
            ]
        if self.throughput:
            lines += ["", f"(3) eval throughput, {self.throughput[0].tasks} synthetic table-QA tasks, scripted policy"]
            first = self.throughput[0]
            for t in self.throughput:
                ratio = ""
                if t is not first and first.tasks_per_min:
                    ratio = f"  = {t.tasks_per_min / first.tasks_per_min:.2f}x concurrency {first.concurrency}"
                lines.append(
                    f"    concurrency {t.concurrency}: {t.tasks_per_min:6.1f} tasks/min "
                    f"({t.tasks_wall_s:.1f} s for the tasks, pool start {t.pool_start_s:.1f} s, "
                    f"accuracy {t.accuracy:.0%}){ratio}"
                )
        if self.memory:
            m = self.memory
            lines += [
                "",
                f"(4) memory per pooled kernel (mean of {m.kernels})",
                f"    fresh: RSS {m.fresh_rss_mib:.0f} MiB, USS {m.fresh_uss_mib:.0f} MiB; after a pandas task "
                f"(10k-row frame): RSS {m.used_rss_mib:.0f} MiB, USS {m.used_uss_mib:.0f} MiB",
            ]
        if self.gateway:
            lines += self.gateway.render()
        return "\n".join(lines)


def _environment() -> dict[str, Any]:
    import pandas

    return {
        "cpus": os.cpu_count(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "load_after": None,
        "python": platform.python_version(),
        "pandas": pandas.__version__,
        "platform": platform.platform(terse=True),
    }


async def measure_execution(
    executor: KernelExecutor, folder: Path, repeat: int, log: Callable[[str], None]
) -> list[ExecutionOverhead]:
    results = []
    for workload, code in (("pass", PASS_CODE), ("pandas groupby 10k", GROUPBY_CODE)):
        log(f"(1) {workload}: {repeat} samples of each method")
        # Warm up: the kernel imports pandas once; the fresh process never can.
        await run_executor(executor, code)
        await run_raw(executor.client, code)
        result = ExecutionOverhead(workload, Samples(), Samples(), Samples())
        methods: list[tuple[Samples, Callable[[], Any]]] = [
            (result.fresh_process, functools.partial(asyncio.to_thread, run_in_fresh_process, code, folder)),
            (result.executor, functools.partial(run_executor, executor, code)),
            (result.raw_client, functools.partial(run_raw, executor.client, code)),
        ]
        for index in range(repeat):
            # Rotate the order so no method always runs right after the costly fresh process.
            shift = index % len(methods)
            for samples, method in methods[shift:] + methods[:shift]:
                started = time.perf_counter()
                await method()
                samples.seconds.append(time.perf_counter() - started)
        results.append(result)
    return results


async def measure_agent_loop(
    executor: KernelExecutor, model: OpenAICompatModel, folder: Path, runs: int, log: Callable[[str], None]
) -> AgentLoop:
    log(f"(2) agent loop: {runs} scripted runs")
    task = Task(
        f"What is the mean value for key k07 in {CSV_NAME}?",
        [DataFile(CSV_NAME, (folder / CSV_NAME).stat().st_size)],
    )
    samples: list[tuple[float, float, float, int]] = []  # (total, model, code) seconds, rounds
    for index in range(runs + 1):  # the first run warms up and is not counted
        timed_model, timed_executor = TimedModel(model), TimedExecutor(executor)
        agent = Agent(timed_model, timed_executor, max_rounds=10)
        started = time.perf_counter()
        events = [event async for event in agent.run(task)]
        total = time.perf_counter() - started
        if agent.status != "completed":
            raise BenchError(f"the scripted run ended {agent.status}: {getattr(events[-1], 'error', '')}")
        if index:
            samples.append((total, timed_model.seconds, timed_executor.seconds, timed_model.turns))
    # The median run (by time per round), broken down, so its parts add up to its total.
    total, model_s, code_s, turns = sorted(samples, key=lambda s: s[0] / s[3])[len(samples) // 2]
    return AgentLoop(
        runs=runs,
        rounds_per_run=turns,
        round_ms=total / turns * 1000,
        model_ms=model_s / turns * 1000,
        code_ms=code_s / turns * 1000,
        overhead_ms=(total - model_s - code_s) / turns * 1000,
    )


async def measure_memory(folder: Path, kernel: str, log: Callable[[str], None]) -> KernelMemory:
    log("(4) memory per pooled kernel")
    csv = folder / CSV_NAME
    fresh: list[tuple[float, float]] = []
    used: list[tuple[float, float]] = []
    async with KernelPool(2, kernel_name=kernel) as pool:
        async with pool.session([csv]) as first, pool.session([csv]) as second:
            kernels = (first, second)
            pids = [k.executor.manager.provisioner.pid for k in kernels]  # type: ignore[union-attr]
            fresh = [kernel_memory(pid) for pid in pids]
            for k in kernels:
                await run_executor(k.executor, GROUPBY_CODE)
            used = [kernel_memory(pid) for pid in pids]
    return KernelMemory(
        kernels=len(fresh),
        fresh_rss_mib=round(statistics.mean(r for r, _ in fresh), 1),
        fresh_uss_mib=round(statistics.mean(u for _, u in fresh), 1),
        used_rss_mib=round(statistics.mean(r for r, _ in used), 1),
        used_uss_mib=round(statistics.mean(u for _, u in used), 1),
    )


async def run_bench(
    options: BenchOptions, log: Callable[[str], None] = lambda _: None, *, gateway_token: str = ""
) -> BenchReport:
    """Take every measurement; returns the report (``render()`` prints it).

    ``gateway_token`` is the token of ``options.gateway_url`` (kept out of the report)."""
    report = BenchReport(_environment(), options)
    with tempfile.TemporaryDirectory(prefix="deepanalyze-bench-") as tmp:
        folder = Path(tmp)
        write_bench_csv(folder)
        with ScriptedServer(bench_policy) as server:
            model = OpenAICompatModel(server.url)
            try:
                await model.ready()
                executor = await KernelExecutor.start(options.kernel, cwd=folder)
                try:
                    report.execution = await measure_execution(executor, folder, options.repeat, log)
                    report.agent_loop = await measure_agent_loop(executor, model, folder, options.runs, log)
                finally:
                    await executor.shutdown()
                benchmark = TableQA(write_table_qa_set(folder / "tableqa", options.tasks))
                report.throughput = await measure_throughput(
                    model, benchmark, folder, concurrency=options.concurrency, kernel=options.kernel, log=log
                )
                if options.gateway:
                    report.gateway = await measure_gateway(
                        model,
                        benchmark,
                        folder,
                        concurrency=max(options.concurrency),
                        repeat=options.repeat,
                        kernel=options.kernel,
                        gateway_url=options.gateway_url or None,
                        gateway_token=gateway_token,
                        log=log,
                    )
            finally:
                await model.aclose()
        report.memory = await measure_memory(folder, options.kernel, log)
    report.environment["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return report


def print_report(report: BenchReport, stream: TextIO, json_path: Path | None = None) -> None:
    print(report.render(), file=stream, flush=True)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")


__all__ = ["BenchOptions", "BenchReport", "print_report", "run_bench"]
