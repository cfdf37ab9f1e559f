"""The training environment: the same kernel executor and protocol the server runs.

Owns ``KernelEnvironment`` (a warm ``KernelPool`` from the core, one kernel per episode,
its namespace reset between episodes), ``KernelEpisode.step`` (run the first ``<Code>``
block of a model turn, return the feedback the model sees), the ``stateless`` option
(clear the namespace before every block, as the reference's training environment ran
each block with fresh globals), per-block timeouts, and ``EnvironmentThread``, which
keeps an environment on its own event loop so synchronous trainers can drive it.

Must not format feedback itself (``feedback.format_feedback`` does, inside the
executor) nor know about tokens or models.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from jupyter_deepanalyze.config import DeepAnalyze, setting_default
from jupyter_deepanalyze.execution import DeadKernelError
from jupyter_deepanalyze.execution.pool import KernelPool, PooledKernel
from jupyter_deepanalyze.protocol import DataFile, extract_code, first_code_block

T = TypeVar("T")


def observation_text(feedback: str) -> str:
    """The observation appended after a ``</Code>`` turn (PROTOCOL.md, training-time facts)."""
    return f"\n<Execute>\n{feedback}\n</Execute>\n"


@dataclass
class EnvConfig:
    """Settings of the kernel environment."""

    kernels: int = 2
    """Kernels kept warm; at most this many episodes run at once."""
    execution_timeout: float = 30.0
    """Seconds one code block may run before the kernel is interrupted."""
    stateless: bool = False
    """Clear the namespace before every block (the reference's training distribution).
    False keeps state between blocks, as the live kernel of the product does."""
    output_limit: int | None = setting_default("output_limit")
    """Characters of output the model sees (head and tail kept); None sends everything
    (default: ``DeepAnalyze.output_limit``'s)."""
    keep_output_before_error: bool = setting_default("keep_output_before_error")
    """Send what a failing block printed before its ``[Error]:`` line (False: reference
    parity; default: ``DeepAnalyze.keep_output_before_error``'s)."""

    def __post_init__(self) -> None:
        if self.kernels < 1:
            raise ValueError(f"env.kernels must be at least 1, got {self.kernels}")
        if self.execution_timeout <= 0:
            raise ValueError(f"env.execution_timeout must be positive, got {self.execution_timeout}")


@dataclass
class StepResult:
    """What one model turn did in the environment.

    ``feedback`` is None when the turn held no ``<Code>`` block (nothing ran).
    ``status`` is the executor's (``ok``, ``error``, ``timeout``) or ``dead`` when the
    kernel died; after ``dead`` the episode cannot continue.
    """

    code: str | None = None
    feedback: str | None = None
    status: str | None = None
    duration: float = 0.0

    @property
    def executed(self) -> bool:
        return self.feedback is not None


@dataclass
class EpisodeStats:
    """Counts of one episode, for metrics."""

    executions: int = 0
    errors: int = 0
    timeouts: int = 0
    kernel_time: float = 0.0
    kernel_died: bool = False
    statuses: list[str] = field(default_factory=list)


class KernelEpisode:
    """One task in one kernel whose working directory holds the task's files."""

    def __init__(self, kernel: PooledKernel, config: EnvConfig) -> None:
        self._kernel = kernel
        self.config = config
        self.stats = EpisodeStats()

    @property
    def files(self) -> list[DataFile]:
        """The files as the first message describes them (names relative to ``workdir``)."""
        return list(self._kernel.files)

    @property
    def workdir(self) -> Path:
        return self._kernel.workdir

    @property
    def executor(self) -> Any:
        """The episode's ``KernelExecutor`` (for the core ``Agent``, which runs blocks itself)."""
        return self._kernel.executor

    async def execute(self, code: str) -> StepResult:
        """Run ``code`` (already extracted from a ``<Code>`` block)."""
        if self.stats.kernel_died:
            return StepResult(code, "[Error]:\nthe kernel died earlier in this episode", "dead")
        started = time.monotonic()
        try:
            if self.config.stateless:
                await self._kernel.reset()
            result = await self._kernel.executor.execute(code, timeout=self.config.execution_timeout)
        except DeadKernelError as exc:
            self.stats.kernel_died = True
            step = StepResult(code, f"[Error]:\n{exc}", "dead", time.monotonic() - started)
        else:
            step = StepResult(code, result.feedback, result.status, result.duration)
        self.stats.executions += 1
        self.stats.errors += step.status in ("error", "dead")
        self.stats.timeouts += step.status == "timeout"
        self.stats.kernel_time += step.duration
        self.stats.statuses.append(step.status or "")
        return step

    async def step(self, model_text: str) -> StepResult:
        """Run the first ``<Code>`` block of a model turn; nothing runs without one."""
        block = first_code_block(model_text)
        if block is None:
            return StepResult()
        return await self.execute(extract_code(block))


class KernelEnvironment:
    """Warm kernels lent to episodes: ``async with env.episode(files) as episode``."""

    def __init__(self, config: EnvConfig | None = None, *, root: str | Path | None = None) -> None:
        self.config = config or EnvConfig()
        feedback = DeepAnalyze(
            output_limit=self.config.output_limit,
            keep_output_before_error=self.config.keep_output_before_error,
        ).feedback_options()
        self.pool = KernelPool(
            self.config.kernels, root=root, executor_options={"feedback": feedback}
        )

    async def start(self) -> KernelEnvironment:
        await self.pool.start()
        return self

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> KernelEnvironment:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def episode(
        self, files: Iterable[str | Path] = (), *, name: str | None = None
    ) -> AsyncIterator[KernelEpisode]:
        """A kernel working in a fresh folder with copies of ``files``; reset afterwards."""
        async with self.pool.session(files, name=name) as kernel:
            yield KernelEpisode(kernel, self.config)


class EnvironmentThread:
    """A ``KernelEnvironment`` on its own event loop thread, for synchronous callers.

    Trainers call :meth:`run` with a coroutine function taking the environment; the
    kernels stay warm between calls.
    """

    def __init__(self, config: EnvConfig | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kernel-env", daemon=True)
        self._thread.start()
        self.env = KernelEnvironment(config)
        self._submit(self.env.start()).result()

    def _submit(self, coroutine: Awaitable[T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]

    def run(self, function: Callable[[KernelEnvironment], Awaitable[T]]) -> T:
        """Run ``function(env)`` on the environment's loop and wait for its result."""
        return self._submit(function(self.env)).result()

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._submit(self.env.close()).result(timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> EnvironmentThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
