"""Exact parity: a code block run as the reference loop's ``execute_code`` runs it.

Owns what ``DeepAnalyze.parity`` changes about an execution (shared/PROTOCOL.md, "Exact
parity"): the block runs with fresh globals (``exec(code, {})`` semantics, ``__name__``
is ``builtins``), in the kernel's working folder; the model is told everything it printed
to stdout, then everything it printed to stderr; warnings read ``<string>:N: Category:
message``; no trailing-expression value, no figure placeholder, no cap; an exception
gives the ``[Error]:`` block with the stderr text appended and stdout dropped.

``run_like_reference`` does it; it imports only the standard library because its source
is sent, as it is, to the kernel (``ParityRun.source``), where it runs inside the cell
so that what the block prints still reaches the notebook. Its result comes back through
the execute request's ``user_expressions`` (``KernelExecutor``) or the shell's namespace
(``InProcessExecutor``); ``ParityRun.error_output`` is the block's error for the cell
and ``ParityRun.result`` turns it all into the ``ExecutionResult``.

Must not change anything when parity is off: executors call in only when their
``FeedbackOptions.parity`` is set.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from ..feedback import ExecutionError, format_error
from . import ExecutionResult

RESULT_NAME = "__deepanalyze_parity__"
"""The one name the parity cell sets in the namespace; taken out again when read."""
RESULT_EXPRESSION = f"get_ipython().user_ns.pop({RESULT_NAME!r}, None)"
RUNNER_FILENAME = "<deepanalyze-parity>"
"""The runner's own frames must never read ``<string>``: that name is the block's."""


def run_like_reference(code: str) -> dict:
    """Run ``code`` with fresh globals; return the text the reference tells the model.

    ``{"text": ..., "error": None}``, or with ``"error": {"ename", "evalue", "line",
    "traceback"}`` when the block raised. What the block prints also goes on to the current
    ``sys.stdout``/``sys.stderr`` (the notebook shows it). An interrupt or ``SystemExit``
    (not an ``Exception``) propagates, as in the reference.
    """
    import contextlib
    import io
    import sys
    import traceback

    class Copy(io.TextIOBase):
        """Keeps what is written and passes it on to the stream it replaces."""

        def __init__(self, onward):
            super().__init__()
            self.kept = io.StringIO()
            self.onward = onward

        def writable(self):
            return True

        def write(self, text):
            written = self.kept.write(text)  # a non-str raises here, as StringIO does
            try:
                self.onward.write(text)
            except Exception:  # the notebook's copy is best effort; the model's is not
                pass
            return written

        def flush(self):
            with contextlib.suppress(Exception):
                self.onward.flush()

    out, err = Copy(sys.stdout), Copy(sys.stderr)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(code, {})
    except Exception as raised:
        # The reference finds the block's line by scanning the printed traceback for the
        # first "File "<string>", line N" (a chained exception's frames come first).
        line = None
        for row in traceback.format_exc().splitlines():
            if 'File "<string>", line' not in row:
                continue
            try:
                line = int(row.partition(", line ")[2].partition(",")[0])
            except ValueError:
                continue
            break
        source = code.splitlines()
        message = "Traceback (most recent call last):\n"
        if line is not None and 1 <= line <= len(source):
            message += f'  File "<string>", line {line}, in <module>\n    {source[line - 1].strip()}\n'
        message += f"{type(raised).__name__}: {raised}"
        error = {"ename": type(raised).__name__, "evalue": str(raised), "line": line, "traceback": message}
        printed_to_stderr = err.kept.getvalue()
        if printed_to_stderr:
            message += "\n" + printed_to_stderr
        return {"text": "[Error]:\n" + message.strip(), "error": error}
    return {"text": out.kept.getvalue() + err.kept.getvalue(), "error": None}


def _runner_source() -> str:
    return inspect.getsource(run_like_reference)


@dataclasses.dataclass(frozen=True)
class ParityRun:
    """One block to run with reference parity: what to send, and how to read the result."""

    code: str

    @property
    def source(self) -> str:
        """The cell the kernel (or shell) runs: the runner, applied to the block.

        The runner is compiled under its own file name into a private namespace; only
        ``RESULT_NAME`` is left behind, holding the result until it is read.
        """
        return (
            "try:\n"
            f"    {RESULT_NAME} = {{}}\n"
            f"    exec(compile({_runner_source()!r}, {RUNNER_FILENAME!r}, 'exec'), {RESULT_NAME})\n"
            f"    {RESULT_NAME} = {RESULT_NAME}['run_like_reference']({self.code!r})\n"
            "except BaseException:\n"
            f"    globals().pop({RESULT_NAME!r}, None)\n"
            "    raise\n"
        )

    @property
    def user_expressions(self) -> dict[str, str]:
        """Read (and remove) the result in the same execute request, as JSON."""
        return {"parity": f"__import__('json').dumps({RESULT_EXPRESSION})"}

    @staticmethod
    def value_from_reply(reply: Mapping[str, Any]) -> dict[str, Any] | None:
        """The runner's result from an ``execute_reply``; None when the cell did not finish."""
        import ast
        import json

        expression = (reply.get("user_expressions") or {}).get("parity") or {}
        if expression.get("status") != "ok":
            return None
        text = expression.get("data", {}).get("text/plain")
        if not isinstance(text, str):
            return None
        try:
            value = json.loads(ast.literal_eval(text))
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, dict) else None

    @staticmethod
    def error_output(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The nbformat ``error`` output of the block's own exception (the runner caught
        it, so the kernel showed none): the traceback as the model reads it, without the
        stderr text (the cell shows that already). None when the block did not raise."""
        error = (value or {}).get("error")
        if not error:
            return None
        return {
            "output_type": "error",
            "ename": str(error.get("ename", "Error")),
            "evalue": str(error.get("evalue", "")),
            "traceback": str(error.get("traceback", "")).strip().splitlines(),
        }

    def result(self, ran: ExecutionResult, value: Mapping[str, Any] | None) -> ExecutionResult:
        """The execution as the model sees it, from what the cell did.

        ``ran`` is what the executor collected running :attr:`source` (with
        :meth:`error_output` already among its outputs); ``value`` the runner's result
        (None when the cell did not finish: a timeout, an interrupt, ``SystemExit``).
        """
        if value is None:
            if ran.status in ("timeout", "interrupted") or ran.error is None:
                return ran
            # Raised past the runner (e.g. SystemExit): the kernel's line numbers are the
            # wrapper's, not the block's.
            feedback = format_error(self.code, ran.error.ename, ran.error.evalue, None)
            return dataclasses.replace(ran, feedback=feedback)
        text = str(value.get("text", ""))
        shown = self.error_output(value)
        if shown is None:
            return dataclasses.replace(ran, status="ok", feedback=text, error=None)
        error = ExecutionError(shown["ename"], shown["evalue"], tuple(shown["traceback"]))
        return dataclasses.replace(ran, status="error", feedback=text, error=error)
