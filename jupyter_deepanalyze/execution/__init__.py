"""Where the model's code runs: one interface, several executors.

Owns ``Executor`` (the surface the agent uses), ``ExecutionResult`` and the named
failures. ``kernel.KernelExecutor`` runs code in a Jupyter kernel; ``pool.KernelPool``
keeps warm kernels for eval and training; ``inprocess`` (the magic) runs it in the
calling IPython shell.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..protocol import ExecutionError

OutputCallback = Callable[[dict[str, Any]], Awaitable[None] | None]


class ExecutionFailure(RuntimeError):
    """The executor itself failed (not the code it ran)."""


class DeadKernelError(ExecutionFailure):
    """The kernel died or was restarted: its state is gone."""


@dataclass
class ExecutionResult:
    """What running one code block produced.

    ``status`` is ``ok``, ``error``, ``timeout`` or ``interrupted``. ``outputs`` are
    nbformat output dicts (consecutive streams merged); ``feedback`` is the text the
    model is told (PROTOCOL.md, "What the model sees of an execution").
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


__all__ = [
    "DeadKernelError",
    "ExecutionFailure",
    "ExecutionResult",
    "Executor",
    "OutputCallback",
]
