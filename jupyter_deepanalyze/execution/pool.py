"""A warm kernel pool for many short tasks (evaluation, RL rollouts).

Owns a fixed number of started kernels — on this machine, or on a Jupyter kernel gateway
— and hands them out one task at a time, each task in its own working folder holding
copies of its input files (``task_folders``: on this machine or a shared filesystem, or
made on the kernel's side with the files shipped through the kernel); between tasks the
kernel's namespace is reset (imported modules stay loaded, which is what makes a warm
kernel fast). A kernel that died is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from ..config import DeepAnalyze
from ..protocol import DataFile
from . import ExecutionFailure
from .gateway import GatewayEndpoint
from .kernel import KernelExecutor
from .task_folders import MAX_SHIPPED_BYTES, KernelFolders, LocalFolders, TaskFolders, silent

log = logging.getLogger(__name__)

_RESET_CODE = """\
get_ipython().reset(new_session=True, aggressive=False)
import sys as _da_sys
if "matplotlib.pyplot" in _da_sys.modules:
    _da_sys.modules["matplotlib.pyplot"].close("all")
del _da_sys
"""


@dataclass
class PooledKernel:
    """A kernel lent to one task, working in ``workdir``.

    ``workdir`` is the folder as the kernel sees it; ``local`` says whether it is also
    readable here (False for a folder made on a gateway kernel's own machine).
    """

    executor: KernelExecutor
    workdir: PurePath
    files: list[DataFile] = field(default_factory=list)
    local: bool = True

    async def reset(self) -> None:
        """Clear the namespace (variables, history); the working directory stays."""
        await silent(self.executor, _RESET_CODE)


class KernelPool:
    """``size`` warm kernels; ``async with pool.session(inputs) as kernel`` lends one.

    Kernels start on this machine, or on the kernel gateway ``gateway``. Task folders are
    made in ``root`` (default: a new temporary folder). With a gateway they are made on
    the kernel's side and the task's files shipped through the kernel (at most
    ``max_shipped_bytes`` per task) — unless ``shared_workdir`` names a folder the
    gateway's kernels see at the same path (a shared filesystem), where a new temporary
    folder holds them instead.
    """

    def __init__(
        self,
        size: int = 2,
        *,
        kernel_name: str = "python3",
        root: str | Path | None = None,
        keep_workdirs: bool = False,
        executor_options: Mapping[str, Any] | None = None,
        gateway: GatewayEndpoint | None = None,
        shared_workdir: str | Path | None = None,
        max_shipped_bytes: int = MAX_SHIPPED_BYTES,
    ) -> None:
        if size < 1:
            raise ValueError("a kernel pool needs at least one kernel")
        self.size = size
        self.kernel_name = kernel_name
        self.gateway = gateway
        self.folders: TaskFolders
        if gateway is None or root is not None:
            self.folders = LocalFolders(root)
        elif shared_workdir:
            self.folders = LocalFolders(parent=shared_workdir)
        else:
            self.folders = KernelFolders(max_shipped_bytes)
        self.keep_workdirs = keep_workdirs
        self._executor_options = dict(executor_options or {})
        self._idle: asyncio.Queue[KernelExecutor] = asyncio.Queue()
        self._all: set[KernelExecutor] = set()
        self._starting = 0
        self._closed = False

    @classmethod
    def from_config(
        cls, config: DeepAnalyze, size: int, *, kernel_name: str = "python3", **options: Any
    ) -> KernelPool:
        """A pool as the settings say: their feedback options, kernels on ``gateway_url``
        (task folders in ``shared_workdir``, else shipped, at most ``max_shipped_mb``)."""
        return cls(
            size,
            kernel_name=kernel_name,
            executor_options={"feedback": config.feedback_options()},
            gateway=config.gateway_endpoint(),
            shared_workdir=config.shared_workdir or None,
            max_shipped_bytes=int(config.max_shipped_mb * (1 << 20)),
            **options,
        )

    @property
    def root(self) -> Path | None:
        """The folder on this machine that holds the task folders (None: they are on the kernels' side)."""
        return self.folders.root if isinstance(self.folders, LocalFolders) else None

    async def start(self) -> KernelPool:
        """Start the missing kernels concurrently."""
        missing = self.size - len(self._all) - self._starting
        await asyncio.gather(*(self._add_kernel() for _ in range(missing)))
        return self

    async def __aenter__(self) -> KernelPool:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _start_kernel(self) -> KernelExecutor:
        if self.gateway is not None:
            return await KernelExecutor.start_on_gateway(
                self.gateway, self.kernel_name, **self._executor_options
            )
        return await KernelExecutor.start(self.kernel_name, cwd=self.root, **self._executor_options)

    async def _add_kernel(self) -> None:
        self._starting += 1
        try:
            executor = await self._start_kernel()
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
        executor = await self._idle.get()
        try:
            workdir, files = await self.folders.create(executor, inputs, name or uuid.uuid4().hex[:12])
        except BaseException:
            await self._give_back(executor, None)
            raise
        try:
            yield PooledKernel(executor, workdir, files, self.folders.local)
        finally:
            await self._give_back(executor, workdir)

    async def _give_back(self, executor: KernelExecutor, workdir: PurePath | None) -> None:
        remove = workdir is not None and not self.keep_workdirs
        if not self._closed and await executor.is_alive():
            try:
                await silent(executor, _RESET_CODE)
                if remove:
                    assert workdir is not None
                    await self.folders.remove(executor, workdir)
                    remove = False
            except Exception as exc:  # a wedged kernel is replaced, not reused
                log.warning("resetting a pooled kernel failed (%s); replacing it", exc)
            else:
                self._idle.put_nowait(executor)
                return
        if remove:
            assert workdir is not None
            with contextlib.suppress(Exception):  # a folder on a dead kernel's side stays
                await self.folders.remove(None, workdir)
        self._all.discard(executor)
        await executor.shutdown()
        if not self._closed:
            await self._add_kernel()

    async def close(self) -> None:
        self._closed = True
        executors, self._all = list(self._all), set()
        await asyncio.gather(*(e.shutdown() for e in executors), return_exceptions=True)
        self.folders.close()
