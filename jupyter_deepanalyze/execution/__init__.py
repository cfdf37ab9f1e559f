"""Where the model's code runs: one interface, several executors.

Owns ``Executor`` (the surface the agent uses), ``ExecutionResult`` and the named
failures. ``kernel.KernelExecutor`` runs code in a Jupyter kernel (``stopping``: code that will not
stop, a kernel that goes down) — on this machine, or
on a Jupyter kernel gateway (``gateway``, ``gateway_channels``; ``clients`` picks the
transport for a server's kernels); ``pool.KernelPool`` keeps warm kernels for eval and
training, their task folders in ``task_folders``; ``inprocess.InProcessExecutor`` (the magic)
runs it in the calling IPython shell, with ``capture`` (what a block shows) and
``shell_thread`` (handing work to the shell's thread, interrupting it). ``snapshots``
lists the files under the code's working folder where the code runs, so the files a
block wrote can be reported (``ListsFiles``). Both executors
accumulate outputs with ``outputs.OutputAccumulator`` and report changes to
``on_output`` as ``outputs.OutputChange`` items.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..feedback import ExecutionError
from ..outputs import OutputChange

if TYPE_CHECKING:
    from .snapshots import FolderSnapshot

OutputCallback = Callable[[OutputChange], Awaitable[None] | None]
"""Told what changed in the running block's outputs: a new output, a display update, a clear."""


class ExecutionFailure(RuntimeError):
    """The executor itself failed (not the code it ran)."""


class DeadKernelError(ExecutionFailure):
    """The kernel died or was restarted: its state is gone."""


class KernelUnresponsive(ExecutionFailure):
    """The kernel stays busy with code that ignored the interrupt (it catches
    ``KeyboardInterrupt``): nothing else can run in it until it is restarted, or the code
    ends by itself."""


@dataclass
class ExecutionResult:
    """What running one code block produced.

    ``status`` is ``ok``, ``error``, ``timeout`` or ``interrupted``. ``outputs`` are the
    nbformat output dicts the cell ends with (``outputs.OutputAccumulator``: streams
    merged, ``clear_output`` and display updates applied); ``feedback`` is the text the
    model is told of them (PROTOCOL.md, "What the model sees of an execution").
    """

    status: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    execution_count: int | None = None
    feedback: str = ""
    error: ExecutionError | None = None
    duration: float = 0.0


class Executor(Protocol):
    """Runs code blocks one at a time and keeps state between them."""

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult: ...

    async def interrupt(self) -> None: ...


class ListsFiles(Protocol):
    """An executor that can say which files its code wrote: ``snapshot_files`` lists the
    files under a folder (its code's working directory by default) where the code runs
    (``snapshots``); None when it cannot. The agent diffs a snapshot before and after
    each block into an ``artifacts`` event."""

    async def snapshot_files(self, folder: str | None = None) -> FolderSnapshot | None: ...


__all__ = [
    "DeadKernelError",
    "ExecutionFailure",
    "KernelUnresponsive",
    "ExecutionResult",
    "Executor",
    "ListsFiles",
    "OutputCallback",
]
