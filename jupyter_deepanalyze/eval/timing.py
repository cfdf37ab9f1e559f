"""Where a run's time goes: wrappers that add up model time and code time.

Owns ``TimedModel`` (time spent waiting for a model's text, HTTP included) and
``TimedExecutor`` (time spent inside ``Executor.execute``, and listing the working
folder before and after each block, which the agent asks for the files a block wrote). Wrapped around one task's
model and executor, the rest of its wall time is the agent loop's own overhead.

Must not change what the wrapped model or executor does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from ..execution import ExecutionResult, Executor, OutputCallback
from ..execution.snapshots import FolderSnapshot
from ..llm import ChatModel, GenerationParams, Message
from ..protocol import Dialect


class TimedModel:
    """A ``ChatModel`` view of ``model`` that adds up the seconds spent waiting for its chunks.

    It does not own ``model``: ``aclose`` leaves it open (a runner shares one model
    between concurrent tasks and closes it once).
    """

    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.seconds = 0.0
        self.turns = 0

    @property
    def spec(self) -> str:
        return self.model.spec

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def dialect(self) -> Dialect:
        return self.model.dialect

    async def ready(self) -> None:
        started = time.perf_counter()
        try:
            await self.model.ready()
        finally:
            self.seconds += time.perf_counter() - started

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        self.turns += 1
        return self._timed(self.model.stream(messages, params))

    async def _timed(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        try:
            while True:
                started = time.perf_counter()
                try:
                    chunk = await stream.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    self.seconds += time.perf_counter() - started
                yield chunk
        finally:
            started = time.perf_counter()
            await stream.aclose()  # type: ignore[attr-defined]
            self.seconds += time.perf_counter() - started

    async def aclose(self) -> None:
        """Nothing to close: the wrapped model belongs to the caller."""


class TimedExecutor:
    """An ``Executor`` view of ``executor`` that adds up the seconds spent executing."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.seconds = 0.0
        self.executions = 0

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        self.executions += 1
        started = time.perf_counter()
        try:
            return await self.executor.execute(code, timeout=timeout, on_output=on_output)
        finally:
            self.seconds += time.perf_counter() - started

    async def interrupt(self) -> None:
        await self.executor.interrupt()

    async def snapshot_files(self, folder: str | None = None) -> FolderSnapshot | None:
        """The wrapped executor's listing of its folder (``ListsFiles``), timed as execution."""
        lister = getattr(self.executor, "snapshot_files", None)
        if lister is None:
            return None
        started = time.perf_counter()
        try:
            return await lister(folder)
        finally:
            self.seconds += time.perf_counter() - started
