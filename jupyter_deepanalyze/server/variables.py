"""Summaries of the data a kernel holds: DataFrames, Series, arrays (pandas, numpy, polars).

Owns the inspection that runs in the kernel — one silent execution whose
``user_expressions`` evaluate a self-contained expression: no name is left in the
user's namespace, the execution count does not move, and no library is imported that
the user has not imported — and turning its JSON answer into summaries for the API and
``VariableInfo`` for the model's first message (with the core's one builder,
``variables.variable_info``). Answers are bounded (variables, columns).

Must not change the user's namespace.
"""

from __future__ import annotations

import ast
import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import variables as core_variables
from ..execution import DeadKernelError, ExecutionFailure, KernelUnresponsive
from ..execution.kernel import KernelExecutor
from ..protocol import VariableInfo
from ..variables import variable_info
from .kernels import KernelExecutors

MAX_VARIABLES = 100
"""Variables listed at most (sorted by name)."""
MAX_COLUMNS = core_variables.MAX_COLUMNS
"""Columns listed per variable at most; ``column_count`` says how many there are."""

# The core's describing module, run as plain source inside the kernel (whose Python may
# not have this package): one implementation of "what is this variable" for the magic,
# the model's first message and this endpoint.
_INSPECTOR = Path(core_variables.__file__).read_text(encoding="utf-8")


class VariablesUnavailable(ExecutionFailure):
    """The kernel could not be inspected (busy past the timeout, or the probe failed)."""


def _busy(timeout: float) -> VariablesUnavailable:
    return VariablesUnavailable(
        f"The kernel is busy (it did not answer within {timeout:g} s); try again when it is idle."
    )


@dataclass(frozen=True)
class VariableSummary:
    """One variable as the API shows it."""

    name: str
    type: str
    shape: list[int] | None = None
    columns: list[tuple[str, str]] = field(default_factory=list)
    column_count: int = 0
    memory_bytes: int | None = None
    dtype: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "shape": self.shape,
            "columns": [{"name": n, "dtype": t} for n, t in self.columns],
            "column_count": self.column_count,
            "memory_bytes": self.memory_bytes,
        }
        if self.dtype is not None:
            body["dtype"] = self.dtype
        return body

    def to_variable_info(self) -> VariableInfo:
        """What the model's first message says about it: the magic's builder, on this row."""
        return variable_info(self.to_json())


@dataclass(frozen=True)
class VariablesReport:
    variables: list[VariableSummary]
    missing: list[str] = field(default_factory=list)
    truncated: bool = False


def inspection_expression(
    names: Sequence[str] | None, *, max_variables: int = MAX_VARIABLES, max_columns: int = MAX_COLUMNS
) -> str:
    """A single expression that inspects the namespace it is evaluated in, leaving no names.

    The describing module runs with ``exec`` in a fresh dict; only that dict refers to
    it, so nothing is added to the user's namespace (``globals()`` of the lambda).
    """
    hidden = "set(get_ipython().user_ns_hidden) if callable(globals().get('get_ipython')) else set()"
    return (
        "(lambda scope: (exec(" + repr(_INSPECTOR) + ", scope), "
        "scope['inspect_namespace'](globals(), " + repr(None if names is None else list(names))
        + f", limit={max_variables}, max_columns={max_columns}, hidden=" + hidden + "))[1])"
        "({'__name__': '_deepanalyze_variables'})"
    )


async def inspect_variables(
    executor: KernelExecutor,
    names: Sequence[str] | None = None,
    *,
    timeout: float = 5.0,
    max_variables: int = MAX_VARIABLES,
    max_columns: int = MAX_COLUMNS,
) -> VariablesReport:
    """DataFrames, Series and arrays in the kernel (or exactly the ``names`` asked for).

    Raises ``VariablesUnavailable`` when the kernel does not answer within ``timeout``
    (it is running a cell) or the inspection fails.
    """
    expression = inspection_expression(names, max_variables=max_variables, max_columns=max_columns)
    try:
        # The timeout also covers waiting for a block the agent is running in this kernel.
        reply = await asyncio.wait_for(
            executor.execute_silent("", {"variables": expression}, timeout=timeout), timeout
        )
    except DeadKernelError as exc:
        raise VariablesUnavailable(f"The kernel is not running: {exc}") from None
    except KernelUnresponsive as exc:
        raise VariablesUnavailable(f"Cannot read the kernel's variables: {exc}") from None
    except (asyncio.TimeoutError, ExecutionFailure):
        raise _busy(timeout) from None
    answer = (reply.get("user_expressions") or {}).get("variables") or {}
    if answer.get("status") != "ok":
        error = f"{answer.get('ename', 'Error')}: {answer.get('evalue', reply.get('evalue', ''))}"
        raise VariablesUnavailable(f"Inspecting the kernel's variables failed: {error}")
    try:
        data = json.loads(ast.literal_eval(answer["data"]["text/plain"]))
    except (KeyError, ValueError, SyntaxError, TypeError) as exc:
        raise VariablesUnavailable(f"The kernel's answer about its variables was unreadable: {exc}") from None
    summaries = [
        VariableSummary(
            name=entry["name"],
            type=entry["type"],
            shape=entry.get("shape"),
            columns=[(c["name"], c["dtype"]) for c in entry.get("columns", [])],
            column_count=entry.get("column_count", 0),
            memory_bytes=entry.get("memory_bytes"),
            dtype=entry.get("dtype"),
        )
        for entry in data["variables"]
    ]
    return VariablesReport(summaries, list(data.get("missing", [])), bool(data.get("truncated")))


async def kernel_variables(
    executors: KernelExecutors,
    kernel_id: str,
    names: Sequence[str] | None = None,
    *,
    timeout: float = 5.0,
    max_columns: int = MAX_COLUMNS,
) -> VariablesReport:
    """:func:`inspect_variables` on a server kernel, attaching first if needed, within ``timeout``.

    Raises ``UnknownKernel`` or ``VariablesUnavailable``.
    """

    async def inspect() -> VariablesReport:
        async with executors.lease(kernel_id) as executor:
            return await inspect_variables(executor, names, timeout=timeout, max_columns=max_columns)

    try:
        # Attaching waits for kernel_info, which a kernel running a cell answers late.
        return await asyncio.wait_for(inspect(), timeout)
    except asyncio.TimeoutError:
        raise _busy(timeout) from None
    except DeadKernelError as exc:
        raise VariablesUnavailable(f"The kernel does not answer: {exc}") from None
