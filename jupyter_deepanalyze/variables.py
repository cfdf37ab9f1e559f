"""Describing live data variables (DataFrames, Series, arrays) of a Python namespace.

Owns the one description of a value the model and the UI see: ``describe_value`` (for
the first message's ``VariableInfo``) and ``summarize_namespace`` (the JSON rows of the
server's ``/deepanalyze/kernels/{id}/variables``). pandas, numpy and polars values are
recognized through ``sys.modules`` only, so describing never imports a library the
kernel has not loaded itself.

Must stay pure Python and cheap: it runs inside the user's kernel (the magic, or code
the server sends there), imports nothing from the server, never copies or scans data
(no deep memory counts, no ``describe()``), and never raises on odd objects.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from .protocol import VariableInfo

DEFAULT_LIMIT = 50
"""Variables listed by ``summarize_namespace`` at most."""
MAX_COLUMNS = 200
"""Columns listed per variable by ``summarize_namespace``; ``column_count`` keeps the total."""

# Names IPython puts in every namespace; never the user's data.
_SHELL_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


def type_name(value: Any) -> str:
    """``module.Class`` with the module's top-level package: ``pandas.DataFrame``."""
    cls = type(value)
    module = (cls.__module__ or "").split(".")[0]
    return cls.__qualname__ if module in ("", "builtins") else f"{module}.{cls.__qualname__}"


def _loaded_class(module: str, *path: str) -> type | None:
    """A class of a module the process has already imported, else None."""
    target: Any = sys.modules.get(module)
    for name in path:
        target = getattr(target, name, None)
    return target if isinstance(target, type) else None


def _is(value: Any, module: str, *path: str) -> bool:
    cls = _loaded_class(module, *path)
    return cls is not None and issubclass(type(value), cls)


def _pandas_frame(name: str, value: Any) -> VariableInfo:
    columns = [(str(column), str(dtype)) for column, dtype in value.dtypes.items()]
    memory = int(value.memory_usage(index=True, deep=False).sum())
    return VariableInfo(name, type_name(value), tuple(value.shape), tuple(columns), memory)


def _pandas_series(name: str, value: Any) -> VariableInfo:
    label = "" if value.name is None else str(value.name)
    memory = int(value.memory_usage(index=True, deep=False))
    return VariableInfo(name, type_name(value), tuple(value.shape), ((label, str(value.dtype)),), memory)


def _numpy_array(name: str, value: Any) -> VariableInfo:
    fields = value.dtype.names
    if fields:  # a structured array: its fields are columns
        columns = tuple((field, str(value.dtype.fields[field][0])) for field in fields)
        kind = type_name(value)
    else:
        columns = ()
        kind = f"{type_name(value)}[{value.dtype}]"
    return VariableInfo(name, kind, tuple(int(n) for n in value.shape), columns, int(value.nbytes))


def _polars_frame(name: str, value: Any) -> VariableInfo:
    columns = tuple((str(column), str(dtype)) for column, dtype in value.schema.items())
    return VariableInfo(name, type_name(value), tuple(value.shape), columns, int(value.estimated_size()))


def _polars_series(name: str, value: Any) -> VariableInfo:
    columns = ((str(value.name), str(value.dtype)),)
    return VariableInfo(name, type_name(value), tuple(value.shape), columns, int(value.estimated_size()))


_DESCRIBERS = (
    (("pandas", "DataFrame"), _pandas_frame),
    (("pandas", "Series"), _pandas_series),
    (("numpy", "ndarray"), _numpy_array),
    (("polars", "DataFrame"), _polars_frame),
    (("polars", "Series"), _polars_series),
)


def describe_value(name: str, value: Any) -> VariableInfo | None:
    """Type, shape, columns with dtypes and memory of a data value; None for anything else.

    Recognizes pandas DataFrame and Series, numpy ndarray (structured arrays list their
    fields as columns; plain arrays carry the dtype in the type, ``numpy.ndarray[float64]``)
    and polars DataFrame and Series, subclasses included. A value whose attributes fail
    is described by its type alone rather than raising.
    """
    for (module, cls), describe in _DESCRIBERS:
        if _is(value, module, cls):
            try:
                return describe(name, value)
            except Exception:  # a broken subclass or proxy: say what it is, nothing more
                return VariableInfo(name, type_name(value))
    return None


def variable_json(info: VariableInfo, max_columns: int = MAX_COLUMNS) -> dict[str, Any]:
    """The server's JSON row of a variable: ``{name, type, shape, columns, memory_bytes}``.

    ``columns`` lists at most ``max_columns`` ``{name, dtype}`` entries; ``column_count``
    is the full count.
    """
    return {
        "name": info.name,
        "type": info.type,
        "shape": list(info.shape) if info.shape is not None else None,
        "columns": [{"name": n, "dtype": d} for n, d in list(info.columns)[:max_columns]],
        "column_count": len(info.columns),
        "memory_bytes": info.memory_bytes,
    }


def summarize_namespace(
    namespace: Mapping[str, Any], limit: int = DEFAULT_LIMIT, max_columns: int = MAX_COLUMNS
) -> list[dict[str, Any]]:
    """JSON rows for the data variables of ``namespace``, sorted by name, at most ``limit``.

    Private names (``_x``) and IPython's own names (``In``, ``Out``, …) are skipped.
    """
    rows: list[dict[str, Any]] = []
    for name in sorted(namespace):
        if len(rows) >= limit:
            break
        if name.startswith("_") or name in _SHELL_NAMES:
            continue
        info = describe_value(name, namespace[name])
        if info is not None:
            rows.append(variable_json(info, max_columns))
    return rows


__all__ = ["describe_value", "summarize_namespace", "type_name", "variable_json"]
