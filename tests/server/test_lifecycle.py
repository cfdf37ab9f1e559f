"""Runs outlive their clients, end cleanly with the server, and stay readable after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_deepanalyze.server.eventlog import read_events
from jupyter_deepanalyze.server.runs import LOST_RUN_ERROR, RunManager

from ..scripted_llm import ScriptedLLM
from .conftest import DeepAnalyzeAPI, NotebookKernel
from .test_runs import ANSWER, LOOP


def extension(serverapp: Any) -> Any:
    return serverapp.extension_manager.extension_points["jupyter_deepanalyze"].app


async def test_server_shutdown_cancels_active_runs_and_closes_their_logs(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM, jp_serverapp: Any
) -> None:
    llm.turns.append(LOOP)
    run_id = await api.start_run(notebook_path=notebook.path)
    ws = await api.connect(run_id)
    await api.receive(ws, until="output")  # the loop runs; the browser stays connected
    ext = extension(jp_serverapp)

    await ext.stop_extension()

    rest = await api.receive(ws)
    assert rest[-1]["type"] == "run_finished" and rest[-1]["status"] == "cancelled"
    logged = read_events(Path(ext.runs_dir) / f"{run_id}.jsonl")
    assert logged[-1] == rest[-1]
    assert await notebook.run("print('still here')") == "still here\n"  # interrupted, not killed

    # A new server reads the finished run back from its log, lazily.
    after_restart = RunManager(ext.agent_config, ext.executors, Path(ext.runs_dir))
    reloaded = after_restart.get(run_id)
    assert (reloaded.status, reloaded.kernel_id, reloaded.events) == ("cancelled", notebook.kernel_id, logged)
    followed = [event async for event in reloaded.follow(since=len(logged) - 1)]
    assert followed == [logged[-1]]


async def test_a_log_cut_off_by_a_crash_reads_back_as_a_failed_run(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM, jp_serverapp: Any
) -> None:
    llm.turns.append(ANSWER)
    run_id = await api.start_run(notebook_path=notebook.path)
    complete = await api.watch(run_id)
    ext = extension(jp_serverapp)
    log = Path(ext.runs_dir) / f"{run_id}.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:3]) + lines[3][:10])  # the server died mid-write

    reloaded = RunManager(ext.agent_config, ext.executors, Path(ext.runs_dir)).get(run_id)
    assert reloaded.events[:3] == complete[:3]
    assert reloaded.events[3]["type"] == "run_finished"
    assert (reloaded.status, reloaded.events[3]["error"]) == ("failed", LOST_RUN_ERROR)
    assert read_events(log) == reloaded.events  # closed once, for every later reader


async def test_after_a_kernel_restart_the_next_run_attaches_to_the_new_kernel(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM
) -> None:
    llm.turns.extend(
        ["<Code>\nvalue = 41\nprint(value)\n</Code>", ANSWER, "<Code>\nprint('value' in dir())\n</Code>", ANSWER]
    )
    first = await api.watch(await api.start_run(notebook_path=notebook.path))
    assert [e["feedback"] for e in first if e["type"] == "execution_finished"] == ["41\n"]
    restarted = await api.fetch("api", "kernels", notebook.kernel_id, "restart", method="POST", body="")
    assert restarted.code == 200

    second = await api.watch(await api.start_run(notebook_path=notebook.path))
    assert [e["feedback"] for e in second if e["type"] == "execution_finished"] == ["False\n"]
    assert second[-1]["status"] == "completed"


async def test_a_kernel_restart_during_a_run_fails_it_saying_the_variables_are_gone(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM
) -> None:
    llm.turns.extend(["<Code>\nvalue = 1\n</Code>", "<Code>\nprint(value)\n</Code>"])
    run_id = await api.start_run(notebook_path=notebook.path, approval="manual")
    ws = await api.connect(run_id)
    first = (await api.receive(ws, until="approval_required"))[-1]
    await api.call("POST", "runs", run_id, "approve", body={"cell_id": first["cell_id"], "action": "run"})
    second = (await api.receive(ws, until="approval_required"))[-1]
    restarted = await api.fetch("api", "kernels", notebook.kernel_id, "restart", method="POST", body="")
    assert restarted.code == 200
    await api.call("POST", "runs", run_id, "approve", body={"cell_id": second["cell_id"], "action": "run"})

    rest = await api.receive(ws)
    assert not [e for e in rest if e["type"] == "output"]  # print(value) never ran in the fresh kernel
    assert rest[-1]["type"] == "run_finished" and rest[-1]["status"] == "failed"
    assert rest[-1]["error"] == (
        "Execution failed: the kernel was restarted or shut down during the run; its variables are gone"
    )
