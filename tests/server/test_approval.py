"""Approval mode: run, skip and edited code; replay from ``since`` after a reconnect."""

from __future__ import annotations

from jupyter_deepanalyze.agent import SKIPPED_FEEDBACK

from ..scripted_llm import ScriptedLLM
from .conftest import DeepAnalyzeAPI, NotebookKernel


def code_turn(code: str) -> str:
    return f"<Code>\n```python\n{code}\n```\n</Code>"


async def test_approval_runs_skips_and_runs_edited_code_and_replays_after_a_reconnect(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM
) -> None:
    llm.turns.extend(
        [
            code_turn("x = 1\nprint('first')"),
            code_turn("print('second')"),
            code_turn("print('third')"),
            "<Answer>\ndone\n</Answer>",
        ]
    )
    run_id = await api.start_run(notebook_path=notebook.path, approval="manual")
    ws = await api.connect(run_id)
    first_part = await api.receive(ws, until="approval_required")
    first = first_part[-1]
    assert first["code"] == "x = 1\nprint('first')"
    assert (await api.call("GET", "runs", run_id)).body["status"] == "waiting_approval"
    assert await notebook.run("print('x' in dir())") == "False\n"  # nothing ran yet

    wrong = await api.call("POST", "runs", run_id, "approve", body={"cell_id": "da-nope-1", "action": "run"})
    assert wrong.code == 409
    bad = await api.call("POST", "runs", run_id, "approve", body={"cell_id": first["cell_id"], "action": "maybe"})
    assert bad.code == 400
    ok = await api.call("POST", "runs", run_id, "approve", body={"cell_id": first["cell_id"], "action": "run"})
    assert ok.code == 200
    second_part = await api.receive(ws, until="approval_required")
    second = second_part[-1]
    await api.call("POST", "runs", run_id, "approve", body={"cell_id": second["cell_id"], "action": "skip"})
    third_part = await api.receive(ws, until="approval_required")
    third = third_part[-1]
    ws.close()  # the browser goes away while the run waits

    # Reconnect from the event after the last one seen: replay starts exactly there.
    seen = first_part + second_part + third_part
    since = seen[-3]["seq"]
    ws = await api.connect(run_id, since=since)
    replayed = await api.receive(ws, until="approval_required")
    assert replayed == seen[-3:]
    edited = "print('edited')"
    await api.call(
        "POST", "runs", run_id, "approve", body={"cell_id": third["cell_id"], "action": "run", "code": edited}
    )
    rest = await api.receive(ws)

    events = seen + rest
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events == (await api.call("GET", "runs", run_id)).body["events"]
    finished = {e["cell_id"]: e for e in events if e["type"] == "execution_finished"}
    assert (finished[first["cell_id"]]["status"], finished[first["cell_id"]]["feedback"]) == ("ok", "first\n")
    assert finished[second["cell_id"]]["status"] == "skipped"
    assert finished[third["cell_id"]]["code"] == edited
    assert finished[third["cell_id"]]["feedback"] == "edited\n"
    assert events[-1]["status"] == "completed"

    # The model was told what really happened: the skip, and the edited code with its output.
    messages = llm.requests[-1]["messages"]
    assert messages[4] == {"role": "execute", "content": SKIPPED_FEEDBACK}
    assert messages[5] == {"role": "assistant", "content": code_turn(edited)}
    assert messages[6] == {"role": "execute", "content": "edited\n"}
    assert await notebook.run("print(x)") == "1\n"


async def test_cancel_while_waiting_for_approval_runs_nothing(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM
) -> None:
    llm.turns.append(code_turn("ran = True"))
    run_id = await api.start_run(notebook_path=notebook.path, approval="manual")
    ws = await api.connect(run_id)
    waiting = (await api.receive(ws, until="approval_required"))[-1]

    cancelled = await api.call("POST", "runs", run_id, "cancel")
    assert cancelled.body == {"run_id": run_id, "status": "cancelled"}
    rest = await api.receive(ws)
    assert [e["type"] for e in rest][-2:] == ["cell", "run_finished"]  # the status cell; nothing ran
    assert not [e for e in rest if e["type"] == "execution_finished"]
    late = await api.call("POST", "runs", run_id, "approve", body={"cell_id": waiting["cell_id"], "action": "run"})
    assert late.code == 409
    assert await notebook.run("print('ran' in dir())") == "False\n"
