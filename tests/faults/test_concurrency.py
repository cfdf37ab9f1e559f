"""Many at once: ten runs asked for on one kernel, eight runs on eight kernels, fifty clients
following one run."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from ..scripted_llm import ScriptedLLM
from .checks import RunChecks, of_type


def by_conversation(body: dict[str, Any]) -> str:
    """A stateless turn: print the run's number (from its question), then answer with it."""
    messages = body["messages"]
    number = re.search(r"run (\d+)", messages[0]["content"]).group(1)  # type: ignore[union-attr]
    if not any(m["role"] == "assistant" for m in messages):
        return f"<Code>\n```python\nimport time\ntime.sleep(0.2)\nprint('run', {number})\n```\n</Code>"
    return f"<Answer>\nRun {number} printed: {messages[-1]['content'].strip()}\n</Answer>"


async def open_kernel(api: Any, path: str) -> str:
    reply = await api.fetch(
        "api", "sessions", method="POST",
        body=json.dumps({"path": path, "type": "notebook", "kernel": {"name": "python3"}}),
    )
    return json.loads(reply.body)["kernel"]["id"]


async def test_ten_runs_asked_at_once_on_one_kernel_start_one(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    llm.turns.extend([by_conversation] * 2)
    replies = await asyncio.gather(
        *(api.call("POST", "runs", body={"question": "Show run 0.", "notebook_path": notebook.path}) for _ in range(10))
    )
    assert sorted(r.code for r in replies) == [201] + [409] * 9
    [started] = [r for r in replies if r.code == 201]
    for refused in (r for r in replies if r.code == 409):
        assert started.body["run_id"] in refused.body["message"]
    events = await checks.finished(started.body["run_id"], "completed")
    assert of_type(events, "execution_finished")[0]["feedback"] == "run 0\n"
    assert len((await api.call("GET", "runs")).body["runs"]) == 1


async def test_eight_runs_on_eight_kernels_each_keep_to_their_own(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    llm.turns.extend([by_conversation] * 16)
    kernels = [notebook.kernel_id] + [await open_kernel(api, f"other{i}.ipynb") for i in range(1, 8)]
    run_ids = [await api.start_run(question=f"Show run {i}.", kernel_id=k) for i, k in enumerate(kernels)]
    all_events = await asyncio.gather(*(api.watch(run_id) for run_id in run_ids))
    for number, (run_id, events, kernel_id) in enumerate(zip(run_ids, all_events, kernels, strict=True)):
        assert events[0]["kernel_id"] == kernel_id
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert of_type(events, "execution_finished")[0]["feedback"] == f"run {number}\n"
        assert events[-1]["status"] == "completed"
        assert (await api.call("GET", "runs", run_id)).body["events"] == events
    await checks.finished(run_ids[0], "completed")
    listed = (await api.call("GET", "runs")).body["runs"]
    assert sorted(r["run_id"] for r in listed) == sorted(run_ids)


async def test_fifty_clients_following_one_run_see_the_same_events(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    llm.chunk_delay = 0.002  # the run streams for a while: clients join at different moments
    llm.turns.extend(
        ["<Analyze>\n" + "planning " * 100 + "\n</Analyze>\n<Code>\nprint('x')\n</Code>", "<Answer>\nok\n</Answer>"]
    )
    run_id = await api.start_run(notebook_path=notebook.path)
    early = [await api.connect(run_id) for _ in range(25)]
    await api.receive(early[0], until="delta")
    late = [await api.connect(run_id) for _ in range(25)]
    seen = await asyncio.gather(*(api.receive(ws) for ws in early + late))
    events = await checks.finished(run_id, "completed")
    assert all(sequence == events for sequence in seen[1:]) and seen[0][-1] == events[-1]
