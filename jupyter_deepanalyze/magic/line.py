"""Reading a ``%analyze`` line: the variables, the question and the options.

Owns ``parse_magic_line`` (one ``UsageError`` line for anything it cannot read, never a
traceback or an exit), ``describe_variables`` (what the model is told of the named
variables, ``variables.describe_value``) and ``working_directory_files`` (the data files
a question without variables is about).

Must not run anything or talk to the model.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError

from ..protocol import VariableInfo
from ..variables import describe_value, type_name
from ..workspace import DataListing, data_listing

USAGE = """\
%analyze [VARIABLE ...] "QUESTION" [--model SPEC] [--max-rounds N] [--approve] [--continue]
%%analyze [VARIABLE ...] [--model SPEC] [--max-rounds N] [--approve] [--continue]
QUESTION (the cell body)"""


@dataclass(frozen=True)
class MagicArguments:
    """A magic line, read: the variables to analyze, the question and the options."""

    variables: tuple[str, ...]
    question: str
    model: str | None = None
    max_rounds: int | None = None
    approve: bool = False
    follow_up: bool = False
    """``--continue``: continue the last run of the session."""


class _HelpShown(Exception):
    pass


class _LineParser(argparse.ArgumentParser):
    """argparse that reports a bad line as one ``UsageError`` line instead of exiting."""

    def error(self, message: str) -> Any:
        raise UsageError(f"%analyze: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            raise UsageError(f"%analyze: {message.strip()}")
        raise _HelpShown


def _line_parser() -> _LineParser:
    parser = _LineParser(prog="%analyze", usage=USAGE, add_help=True)
    parser.add_argument("words", nargs="*", help="variable names, then the question (quoted)")
    parser.add_argument(
        "--model",
        metavar="SPEC",
        help="model spec (default: the DeepAnalyze config, else $DEEPANALYZE_MODEL)",
    )
    parser.add_argument("--max-rounds", type=int, metavar="N", help="most model turns (default 30)")
    parser.add_argument("--approve", action="store_true", help="ask before running each code block")
    parser.add_argument(
        "--continue", dest="follow_up", action="store_true", help="continue the last run of this session"
    )
    return parser


def parse_magic_line(line: str, cell: str | None = None) -> MagicArguments | None:
    """Read ``%analyze df "question" …`` (``cell`` None) or ``%%analyze df …`` + its body.

    Returns None when only ``--help`` was asked for. Raises ``UsageError`` (one line).
    """
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%analyze: cannot read the line ({exc}); quote the question") from None
    try:
        options = _line_parser().parse_intermixed_args(words)
    except _HelpShown:
        return None
    names: list[str] = list(options.words)
    if cell is None:
        if not names:
            raise UsageError('%analyze needs a question, e.g. %analyze df "What drives churn?"')
        question = names.pop()
    else:
        question = cell
    if not question.strip():
        raise UsageError(
            "%analyze: the question is empty" + ("" if cell is None else " (it is the cell body)")
        )
    for name in names:
        if not name.isidentifier():
            raise UsageError(f"%analyze: {name!r} is not a variable name; quote the question")
    return MagicArguments(
        tuple(names), question.strip(), options.model, options.max_rounds, options.approve, options.follow_up
    )


def describe_variables(namespace: dict[str, Any], names: Sequence[str]) -> list[VariableInfo]:
    """``VariableInfo`` for each named variable; ``UsageError`` names the first unknown one."""
    described: list[VariableInfo] = []
    for name in names:
        if name not in namespace:
            raise UsageError(
                f"%analyze: no variable named {name!r} (quote the question if it has several words)"
            )
        value = namespace[name]
        described.append(describe_value(name, value) or VariableInfo(name, type_name(value)))
    return described


def working_directory_files(folder: Path | None = None) -> DataListing:
    """The data files directly in ``folder`` (default: the cwd): not hidden, not notebooks
    (at most ``workspace.MAX_LISTED_FILES`` described, the rest counted)."""
    folder = folder or Path.cwd()
    try:
        names = sorted(
            path.name
            for path in folder.iterdir()
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".ipynb"
        )
    except OSError:
        return DataListing([])
    return data_listing(folder, names)
