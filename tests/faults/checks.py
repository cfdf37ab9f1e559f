"""What every fault test asserts at its end: the run's final status and message, every
event kept (the websocket, ``GET /deepanalyze/runs/{id}`` and the log on disk agree, ``seq``
0..n with one ``run_finished`` last), the user's cells and variables untouched, and the
kernel answering a follow-up execution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from jupyter_deepanalyze.server.eventlog import read_events

from ..server.conftest import DeepAnalyzeAPI, NotebookKernel

USER_CELLS = ["import pandas as pd", "df = pd.DataFrame({'a': [1, 2, 3]})\nanswer = 42"]


def extension(serverapp: Any) -> Any:
    return serverapp.extension_manager.extension_points["jupyter_deepanalyze"].app


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


@dataclass
class UserWork:
    """The user's notebook: two cells of their own, run in the kernel before any fault."""

    notebook: NotebookKernel
    path: Path
    saved: bytes = b""

    async def create(self) -> None:
        book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in USER_CELLS])
        nbformat.write(book, self.path)
        self.saved = self.path.read_bytes()
        for cell in USER_CELLS:
            await self.notebook.run(cell)

    async def check(self, *, kernel_kept_state: bool = True) -> None:
        """No user cell lost or changed; the kernel answers; its variables survived (unless
        the fault was the kernel's own death or restart)."""
        assert self.path.read_bytes() == self.saved  # the server never writes the user's notebook
        if not kernel_kept_state:  # a new kernel process behind the same ports: wait until it answers
            await self.notebook.client.wait_for_ready(timeout=60)
        assert await self.notebook.run("print('still answering')") == "still answering\n"
        if kernel_kept_state:
            assert await self.notebook.run("print(answer, int(df['a'].sum()))") == "42 6\n"


@dataclass
class RunChecks:
    api: DeepAnalyzeAPI
    serverapp: Any
    user_work: UserWork

    @property
    def runs_dir(self) -> Path:
        return Path(extension(self.serverapp).runs_dir)

    async def finished(
        self,
        run_id: str,
        status: str,
        error: str | None = None,
        *,
        error_starts: str | None = None,
        kernel_kept_state: bool = True,
    ) -> list[dict[str, Any]]:
        """Every event of the finished run, after checking all the module docstring says."""
        events = await self.api.watch(run_id)
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert [e["type"] for e in events].count("run_finished") == 1
        last = events[-1]
        assert last["type"] == "run_finished"
        assert last["status"] == status, last
        if error_starts is not None:
            assert (last["error"] or "").startswith(error_starts), last["error"]
        else:
            assert last["error"] == error, last["error"]
        snapshot = await self.api.call("GET", "runs", run_id)
        assert snapshot.code == 200 and snapshot.body["events"] == events
        assert snapshot.body["status"] == status
        assert read_events(self.runs_dir / f"{run_id}.jsonl") == events
        await self.user_work.check(kernel_kept_state=kernel_kept_state)
        return events
