"""Runs on disk: the run list after a restart, paginated; logs torn by a crash or holding bytes
that are not UTF-8; a server stopped by SIGTERM or killed by SIGKILL in the middle of a run."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_deepanalyze.eval.local_server import LocalServer
from jupyter_deepanalyze.server.eventlog import read_events
from jupyter_deepanalyze.server.runs import LOST_RUN_ERROR, RunManager

from ..scripted_llm import ScriptedLLM
from .checks import RunChecks, extension

LOOP = "<Code>\n```python\nprint('looping', flush=True)\nwhile True:\n    pass\n```\n</Code>"
ANSWER = "<Answer>\nDone.\n</Answer>"


def restarted_manager(serverapp: Any) -> RunManager:
    """What a server started again on the same run logs has: a fresh manager, nothing in memory."""
    ext = extension(serverapp)
    return RunManager(ext.agent_config, ext.executors, Path(ext.runs_dir), ext.model_registry)


async def test_the_run_list_comes_from_disk_newest_first_and_pages(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks, jp_serverapp: Any
) -> None:
    run_ids = []
    for number in range(3):
        llm.turns.append(ANSWER)
        run_ids.append(await api.start_run(question=f"Question {number}", notebook_path=notebook.path))
        await checks.finished(run_ids[-1], "completed")
    newest_first = run_ids[::-1]
    after_restart = await restarted_manager(jp_serverapp).list_runs()  # nothing of them in memory
    assert [r["run_id"] for r in after_restart] == newest_first
    assert after_restart[0] == {
        "run_id": run_ids[2], "kernel_id": notebook.kernel_id, "status": "completed",
        "question": "Question 2", "parent_run_id": None,
    }
    page = await api.call("GET", "runs", params={"limit": 2})
    assert [r["run_id"] for r in page.body["runs"]] == newest_first[:2]
    rest = await api.call("GET", "runs", params={"limit": 2, "before": newest_first[1]})
    assert [r["run_id"] for r in rest.body["runs"]] == newest_first[2:]
    for params, message in [
        ({"limit": 0}, "'limit' must be a whole number from 1 to 500."),
        ({"limit": "x"}, "'limit' must be a whole number from 1 to 500."),
        ({"before": "f" * 32}, f"No run {'f' * 32!r} to list runs before."),
    ]:
        reply = await api.call("GET", "runs", params=params)
        assert (reply.code, reply.body["message"]) == (400, message)


async def test_a_log_torn_by_a_crash_reads_back_as_a_failed_run(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks, jp_serverapp: Any
) -> None:
    llm.turns.append(ANSWER)
    run_id = await api.start_run(notebook_path=notebook.path)
    complete = await checks.finished(run_id, "completed")
    log = checks.runs_dir / f"{run_id}.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:3]) + lines[3][:10])  # the server died mid-write
    manager = restarted_manager(jp_serverapp)
    assert [r["status"] for r in await manager.list_runs()] == ["failed"]
    reloaded = manager.get(run_id)
    assert reloaded.events[:3] == complete[:3]
    assert (reloaded.status, reloaded.events[3]["error"]) == ("failed", LOST_RUN_ERROR)
    assert read_events(log) == reloaded.events  # closed once, for every later reader


async def test_a_log_line_with_bytes_that_are_not_utf8_is_read_not_a_500(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    llm.turns.append("<Answer>\nplain text\n</Answer>")
    run_id = await api.start_run(notebook_path=notebook.path)
    complete = await checks.finished(run_id, "completed")
    copy_id = "c" * 32  # a copy of the log, damaged on disk: read from there, not from memory
    damaged = (checks.runs_dir / f"{run_id}.jsonl").read_bytes().replace(b"plain text", b"plain \xff\xfe text")
    (checks.runs_dir / f"{copy_id}.jsonl").write_bytes(damaged + b"\xff\xff not json at all\n")
    reply = await api.call("GET", "runs", copy_id)
    assert reply.code == 200
    assert len(reply.body["events"]) == len(complete) and reply.body["status"] == "completed"
    assert "plain \ufffd\ufffd text" in str(reply.body["events"])
    listed = await api.call("GET", "runs")
    assert sorted(r["run_id"] for r in listed.body["runs"]) == sorted([run_id, copy_id])


@pytest.fixture
def server_home(tmp_path: Path) -> Iterator[dict[str, Path]]:
    places = {name: tmp_path / name for name in ("root", "runs", "home")}
    for path in places.values():
        path.mkdir()
    (places["root"] / "work").mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("answer = 42")]),
                   places["root"] / "work" / "analysis.ipynb")
    yield places
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize(("sig", "status", "error"), [
    (signal.SIGTERM, "cancelled", None),
    (signal.SIGKILL, "failed", LOST_RUN_ERROR),
])
async def test_a_server_stopped_mid_run_leaves_a_closed_readable_run_after_a_restart(
    sig: signal.Signals, status: str, error: str | None, scripted_llm: Any, server_home: dict[str, Path]
) -> None:
    llm = scripted_llm([LOOP])
    notebook = server_home["root"] / "work" / "analysis.ipynb"
    saved = notebook.read_bytes()
    first = LocalServer(server_home["root"], server_home["runs"], llm.url, server_home["home"]).start()
    async with first.client() as client:
        kernel_id = await first.open_notebook(client, "work/analysis.ipynb")
        started = await client.post("/deepanalyze/runs", json={"question": "Q", "kernel_id": kernel_id})
        run_id = started.json()["run_id"]
    before = await first.follow(run_id, until="output")  # the model's loop runs
    first.stop(sig)

    logged = read_events(server_home["runs"] / f"{run_id}.jsonl")
    assert logged[: len(before)] == before  # every event the clients saw is on disk
    if sig == signal.SIGTERM:  # the server cancelled the run and closed its log as it stopped
        assert (logged[-1]["type"], logged[-1]["status"]) == ("run_finished", "cancelled")

    llm.replace_turns(["<Code>\nprint('after the restart')\n</Code>", ANSWER])
    second = LocalServer(server_home["root"], server_home["runs"], llm.url, server_home["home"]).start()
    try:
        async with second.client() as client:
            listed = (await client.get("/deepanalyze/runs")).json()["runs"]
            assert [(r["run_id"], r["status"]) for r in listed] == [(run_id, status)]
            events = (await client.get(f"/deepanalyze/runs/{run_id}")).json()["events"]
            assert [e["seq"] for e in events] == list(range(len(events)))
            assert events[: len(before)] == before and events[-1]["status"] == status
            assert events[-1]["error"] == error
            assert events == read_events(server_home["runs"] / f"{run_id}.jsonl")
            assert await second.follow(run_id) == events  # replayable, and closed
            # The notebook's kernel (a new one) takes a new run and answers.
            kernel_id = await second.open_notebook(client, "work/analysis.ipynb")
            again = await client.post("/deepanalyze/runs", json={"question": "Q", "kernel_id": kernel_id})
            follow_up = await second.follow(again.json()["run_id"])
            assert follow_up[-1]["status"] == "completed"
            assert [e["feedback"] for e in follow_up if e["type"] == "execution_finished"] == ["after the restart\n"]
    finally:
        second.stop(signal.SIGTERM)
    assert notebook.read_bytes() == saved  # the user's cells are untouched
