"""A warm kernel pool for many short tasks (evaluation, RL rollouts).

Owns a fixed number of started kernels and hands them out one task at a time, each
task in its own working directory holding copies of its input files; between tasks the
kernel's namespace is reset (imported modules stay loaded, which is what makes a warm
kernel fast). A kernel that died is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import DataFile
from ..workspace import list_data_files, stage_inputs
from . import ExecutionFailure
from .kernel import KernelExecutor

log = logging.getLogger(__name__)

_RESET_CODE = """\
get_ipython().reset(new_session=True, aggressive=False)
import sys as _da_sys
if "matplotlib.pyplot" in _da_sys.modules:
    _da_sys.modules["matplotlib.pyplot"].close("all")
del _da_sys
"""


def _chdir_code(path: Path) -> str:
    return f"import os as _da_os\n_da_os.chdir({str(path)!r})\ndel _da_os\n"


@dataclass
class PooledKernel:
    """A kernel lent to one task, working in ``workdir``."""

    executor: KernelExecutor
    workdir: Path
    files: list[DataFile] = field(default_factory=list)

    async def reset(self) -> None:
        """Clear the namespace (variables, history); the working directory stays."""
        await _silent(self.executor, _RESET_CODE + _chdir_code(self.workdir))


async def _silent(executor: KernelExecutor, code: str) -> None:
    reply = await executor.execute_silent(code)
    if reply.get("status") != "ok":
        raise ExecutionFailure(
            f"kernel bookkeeping failed: {reply.get('ename', '')}: {reply.get('evalue', '')}"
        )


class KernelPool:
    """``size`` warm kernels; ``async with pool.session(inputs) as kernel`` lends one."""

    def __init__(
        self,
        size: int = 2,
        *,
        kernel_name: str = "python3",
        root: str | Path | None = None,
        keep_workdirs: bool = False,
        executor_options: Mapping[str, Any] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a kernel pool needs at least one kernel")
        self.size = size
        self.kernel_name = kernel_name
        self._owns_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="deepanalyze-pool-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep_workdirs = keep_workdirs
        self._executor_options = dict(executor_options or {})
        self._idle: asyncio.Queue[KernelExecutor] = asyncio.Queue()
        self._all: set[KernelExecutor] = set()
        self._starting = 0
        self._closed = False

    async def start(self) -> KernelPool:
        """Start the missing kernels concurrently."""
        missing = self.size - len(self._all) - self._starting
        await asyncio.gather(*(self._add_kernel() for _ in range(missing)))
        return self

    async def __aenter__(self) -> KernelPool:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _add_kernel(self) -> None:
        self._starting += 1
        try:
            executor = await KernelExecutor.start(
                self.kernel_name, cwd=self.root, **self._executor_options
            )
        finally:
            self._starting -= 1
        if self._closed:
            await executor.shutdown()
            return
        self._all.add(executor)
        self._idle.put_nowait(executor)

    @contextlib.asynccontextmanager
    async def session(
        self, inputs: Iterable[str | Path] = (), *, name: str | None = None
    ) -> AsyncIterator[PooledKernel]:
        """Lend a kernel working in a fresh folder holding copies of ``inputs``."""
        if self._closed:
            raise ExecutionFailure("the kernel pool is closed")
        if len(self._all) + self._starting < self.size:
            await self.start()
        workdir = self.root / (name or uuid.uuid4().hex[:12])
        if workdir.exists():
            shutil.rmtree(workdir)
        names = stage_inputs(inputs, workdir)
        executor = await self._idle.get()
        kernel = PooledKernel(executor, workdir, list_data_files(workdir, names))
        try:
            await _silent(executor, _chdir_code(workdir))
            yield kernel
        finally:
            await self._give_back(executor)
            if not self.keep_workdirs:
                shutil.rmtree(workdir, ignore_errors=True)

    async def _give_back(self, executor: KernelExecutor) -> None:
        if not self._closed and await executor.is_alive():
            try:
                await _silent(executor, _RESET_CODE + _chdir_code(self.root))
            except Exception as exc:  # a wedged kernel is replaced, not reused
                log.warning("resetting a pooled kernel failed (%s); replacing it", exc)
            else:
                self._idle.put_nowait(executor)
                return
        self._all.discard(executor)
        await executor.shutdown()
        if not self._closed:
            await self._add_kernel()

    async def close(self) -> None:
        self._closed = True
        executors, self._all = list(self._all), set()
        await asyncio.gather(*(e.shutdown() for e in executors), return_exceptions=True)
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
