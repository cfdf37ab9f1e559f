"""Describing live data variables (DataFrames, Series, arrays) of a Python namespace.

Owns the one description of a value the model and the UI see: a JSON row ``{name, type,
shape, columns, column_count, memory_bytes}`` (plus ``dtype`` for arrays), listed by
``summarize_namespace`` for the server's ``/deepanalyze/kernels/{id}/variables``, and
``variable_info``, the one builder of the first message's ``VariableInfo`` from such a
row, used by every front door (the magic through ``describe_value``, the server on the
rows its kernel probe returns), so the model reads the same ``# Data`` section whichever
door the run came through. pandas, numpy and polars values are recognized through
``sys.modules`` only, so describing never imports a library the kernel has not loaded
itself.

Must stay pure Python and cheap: it runs inside the user's kernel (the magic, or code
the server sends there), imports nothing from the server, never copies or scans data
(no deep memory counts, no ``describe()``), and never raises on odd objects.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .protocol import VariableInfo

DEFAULT_LIMIT = 100
"""Variables listed by ``summarize_namespace`` at most."""
MAX_COLUMNS = 200
"""Columns listed per variable by ``summarize_namespace``; ``column_count`` keeps the total."""

# Names IPython puts in every namespace (when its ``user_ns_hidden`` is not passed).
_SHELL_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


def type_name(value: Any) -> str:
    """``package.Class`` of a value: ``pandas.DataFrame``; builtins by class name alone."""
    cls = type(value)
    module = (cls.__module__ or "").split(".")[0]
    return cls.__qualname__ if module in ("", "builtins") else f"{module}.{cls.__qualname__}"


class _Description(NamedTuple):  # not a dataclass: this module also runs as exec'd source
    name: str
    type: str
    shape: tuple[int, ...] | None = None
    columns: tuple[tuple[str, str], ...] = ()
    memory_bytes: int | None = None
    dtype: str | None = None  # arrays: their one element type


def _loaded_class(module: str, name: str) -> type | None:
    """A class of a module the process has already imported, else None."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls if isinstance(cls, type) else None


def _pandas_frame(name: str, value: Any) -> _Description:
    columns = tuple((str(column), str(dtype)) for column, dtype in value.dtypes.items())
    memory = int(value.memory_usage(index=True, deep=False).sum())
    return _Description(name, type_name(value), tuple(value.shape), columns, memory)


def _pandas_series(name: str, value: Any) -> _Description:
    label = "" if value.name is None else str(value.name)
    memory = int(value.memory_usage(index=True, deep=False))
    return _Description(name, type_name(value), tuple(value.shape), ((label, str(value.dtype)),), memory)


def _numpy_array(name: str, value: Any) -> _Description:
    shape = tuple(int(n) for n in value.shape)
    fields = value.dtype.names
    if fields:  # a structured array: its fields are columns
        columns = tuple((field, str(value.dtype.fields[field][0])) for field in fields)
        return _Description(name, type_name(value), shape, columns, int(value.nbytes))
    return _Description(name, type_name(value), shape, (), int(value.nbytes), str(value.dtype))


def _polars_frame(name: str, value: Any) -> _Description:
    columns = tuple((str(column), str(dtype)) for column, dtype in value.schema.items())
    return _Description(name, type_name(value), tuple(value.shape), columns, int(value.estimated_size()))


def _polars_series(name: str, value: Any) -> _Description:
    columns = ((str(value.name), str(value.dtype)),)
    return _Description(name, type_name(value), tuple(value.shape), columns, int(value.estimated_size()))


_DESCRIBERS = (
    ("pandas", "DataFrame", _pandas_frame),
    ("pandas", "Series", _pandas_series),
    ("numpy", "ndarray", _numpy_array),
    ("polars", "DataFrame", _polars_frame),
    ("polars", "Series", _polars_series),
)


def _describe(name: str, value: Any) -> _Description | None:
    for module, class_name, describe in _DESCRIBERS:
        cls = _loaded_class(module, class_name)
        if cls is not None and issubclass(type(value), cls):
            try:
                return describe(name, value)
            except Exception:  # a broken subclass or proxy: say what it is, nothing more
                return _Description(name, type_name(value))
    return None


def variable_info(row: Mapping[str, Any]) -> VariableInfo:
    """What the model's first message says about a described variable (one JSON row).

    A plain array carries its dtype in the type the model reads
    (``numpy.ndarray[float64]``); columns beyond those the row lists are counted in
    ``more_columns``.
    """
    from .protocol import VariableInfo  # here, so the module also runs as plain source (see below)

    dtype = row.get("dtype")
    kind = f"{row['type']}[{dtype}]" if dtype else str(row["type"])
    shape = row.get("shape")
    columns = tuple((str(c["name"]), str(c["dtype"])) for c in row.get("columns") or ())
    more = max(0, int(row.get("column_count") or 0) - len(columns))
    return VariableInfo(
        str(row["name"]), kind, None if shape is None else tuple(shape), columns, row.get("memory_bytes"), more
    )


def describe_value(name: str, value: Any, *, max_columns: int = MAX_COLUMNS) -> VariableInfo | None:
    """Type, shape, columns with dtypes and memory of a data value; None for anything else.

    Recognizes pandas DataFrame and Series, numpy ndarray and polars DataFrame and
    Series, subclasses included. A Series is one column (its name and dtype); a
    structured array's fields are its columns. A value whose attributes fail is
    described by its type alone rather than raising. Built by ``variable_info`` from the
    same row the server's kernel probe returns.
    """
    described = _describe(name, value)
    return None if described is None else variable_info(_row(described, max_columns))


def _row(described: _Description, max_columns: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": described.name,
        "type": described.type,
        "shape": list(described.shape) if described.shape is not None else None,
        "columns": [{"name": n, "dtype": d} for n, d in described.columns[:max_columns]],
        "column_count": len(described.columns),
        "memory_bytes": described.memory_bytes,
    }
    if described.dtype is not None:
        row["dtype"] = described.dtype
    return row


def summarize_namespace(
    namespace: Mapping[str, Any],
    limit: int = DEFAULT_LIMIT,
    *,
    max_columns: int = MAX_COLUMNS,
    hidden: Collection[str] = _SHELL_NAMES,
) -> list[dict[str, Any]]:
    """JSON rows for the data variables of ``namespace``, sorted by name, at most ``limit``.

    Private names (``_x``) and ``hidden`` ones (pass IPython's ``shell.user_ns_hidden``)
    are skipped; other values than data are not listed.
    """
    rows: list[dict[str, Any]] = []
    for name in sorted(namespace):
        if len(rows) >= limit:
            break
        if name.startswith("_") or name in hidden:
            continue
        described = _describe(name, namespace[name])
        if described is not None:
            rows.append(_row(described, max_columns))
    return rows


def inspect_namespace(
    namespace: Mapping[str, Any],
    wanted: Sequence[str] | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    max_columns: int = MAX_COLUMNS,
    hidden: Collection[str] = _SHELL_NAMES,
) -> str:
    """The server's kernel probe: a JSON ``{variables, truncated, missing}``.

    Without ``wanted``: the data variables (as ``summarize_namespace``). With it: exactly
    those names, in that order, other values described by their type alone, and the
    names that do not exist under ``missing``. The server executes this module's source
    in a private dict inside the user's kernel (which may not have this package
    installed) and calls this function there: the one implementation serves both.
    """
    if wanted is None:
        rows = summarize_namespace(namespace, limit + 1, max_columns=max_columns, hidden=hidden)
        missing: list[str] = []
    else:
        rows, missing = [], []
        for name in wanted:
            if name not in namespace:
                missing.append(name)
                continue
            value = namespace[name]
            described = _describe(name, value) or _Description(name, type_name(value))
            rows.append(_row(described, max_columns))
    return json.dumps(
        {"variables": rows[:limit], "truncated": len(rows) > limit, "missing": missing}, default=str
    )


__all__ = ["describe_value", "inspect_namespace", "summarize_namespace", "type_name", "variable_info"]
