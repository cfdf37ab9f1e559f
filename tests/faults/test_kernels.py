"""Faults of the kernel under a run: code that ignores interrupts, a restart or a SIGKILL in
the middle of a block, an infinite loop to cancel, and outputs of hundreds of megabytes."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from jupyter_deepanalyze.notebook import NotebookBuilder

from ..scripted_llm import ScriptedLLM
from .checks import RunChecks, of_type

ANSWER = "<Answer>\nDone.\n</Answer>"
STUBBORN = (
    "<Code>\n```python\nimport time\nprint('ignoring interrupts', flush=True)\nwhile True:\n"
    "    try:\n        time.sleep(0.05)\n    except KeyboardInterrupt:\n        pass\n```\n</Code>"
)
SLEEPER = "<Code>\n```python\nimport time\nprint('sleeping', flush=True)\ntime.sleep(120)\n```\n</Code>"
LOOP = "<Code>\n```python\nprint('looping', flush=True)\nwhile True:\n    pass\n```\n</Code>"
RESTART_HINT = "Restart the kernel (Kernel > Restart Kernel…) to use it again; its variables will be lost."


async def restart(api: Any, kernel_id: str) -> None:
    reply = await api.fetch("api", "kernels", kernel_id, "restart", method="POST", body="")
    assert reply.code == 200


def cells_of(events: list[dict[str, Any]]) -> list[Any]:
    builder = NotebookBuilder()
    for event in events:
        builder.apply(event)
    return builder.notebook.cells


async def test_a_kernel_that_ignores_the_interrupt_is_said_so_and_refuses_new_runs(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    llm.turns.extend([STUBBORN, ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path)
    ws = await api.connect(run_id)
    await api.receive(ws, until="output")  # the stubborn loop runs
    cancelled = await api.call("POST", "runs", run_id, "cancel")
    assert cancelled.body == {"run_id": run_id, "status": "cancelled"}
    await api.receive(ws)

    # A new run does not hang behind the cancelled code: 409, saying why and what to do.
    refused = await api.call("POST", "runs", body={"question": "Q", "notebook_path": notebook.path})
    assert refused.code == 409
    assert refused.body["message"] == (
        "Cannot start a run: the kernel is still busy with code that ignored the interrupt (it catches "
        "KeyboardInterrupt). " + RESTART_HINT
    )
    await restart(api, notebook.kernel_id)
    events = await checks.finished(
        run_id,
        "cancelled",
        "The kernel did not stop: the running code ignores interrupts (it catches KeyboardInterrupt) and the "
        "kernel is still busy with it. " + RESTART_HINT,
        kernel_kept_state=False,
    )
    [finished] = of_type(events, "execution_finished")
    assert finished["status"] == "unresponsive"
    assert of_type(events, "cell")[-1]["source"].startswith("**Run cancelled.** The kernel did not stop")
    # Restarted, the kernel takes a new run.
    llm.replace_turns([ANSWER])
    assert (await api.watch(await api.start_run(notebook_path=notebook.path)))[-1]["status"] == "completed"


async def test_a_restart_during_a_block_fails_the_run_even_when_the_model_would_answer(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    llm.turns.extend([SLEEPER, ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path)
    ws = await api.connect(run_id)
    await api.receive(ws, until="output")
    await restart(api, notebook.kernel_id)
    ws.close()
    events = await checks.finished(
        run_id, "failed", error_starts="Execution failed: the kernel restarted", kernel_kept_state=False
    )
    assert events[-1]["error"].endswith("its variables are gone")
    assert of_type(events, "execution_finished")[0]["status"] == "dead"
    assert len(llm.requests) == 1  # the model was never told a KeyboardInterrupt, nor asked again


async def test_a_kernel_killed_mid_block_fails_the_run_and_the_kernel_comes_back(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks, jp_serverapp: Any
) -> None:
    llm.turns.extend([SLEEPER, ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path)
    ws = await api.connect(run_id)
    await api.receive(ws, until="output")
    os.kill(jp_serverapp.kernel_manager.get_kernel(notebook.kernel_id).provisioner.pid, signal.SIGKILL)
    ws.close()
    events = await checks.finished(
        run_id, "failed", error_starts="Execution failed: the kernel", kernel_kept_state=False
    )
    assert of_type(events, "execution_finished")[0]["status"] == "dead"
    assert len(llm.requests) == 1


async def test_cancel_stops_an_infinite_loop_within_two_seconds(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    llm.turns.extend([LOOP, ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path)
    ws = await api.connect(run_id)
    await api.receive(ws, until="output")
    started = time.monotonic()
    cancelled = await api.call("POST", "runs", run_id, "cancel")
    elapsed = time.monotonic() - started
    ws.close()
    assert cancelled.body == {"run_id": run_id, "status": "cancelled"}
    assert elapsed < 2.0, elapsed
    events = await checks.finished(run_id, "cancelled")
    assert of_type(events, "execution_finished")[0]["status"] == "interrupted"


async def test_a_big_output_keeps_its_end_in_the_cell_and_for_the_model(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    code = "for i in range(300_000):\n    print('line', i, 'of the long output')\nprint('RESULT')"
    llm.turns.extend([f"<Code>\n```python\n{code}\n```\n</Code>", ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path)
    events = await checks.finished(run_id, "completed")
    [cell] = [c for c in cells_of(events) if c.cell_type == "code"]
    [stream] = cell.outputs
    assert stream["text"].startswith("line 0 of the long output\n")
    assert stream["text"].endswith("line 299999 of the long output\nRESULT\n")
    assert "characters of output cut here ...]" in stream["text"]
    assert len(stream["text"]) < 2_100_000
    feedback = of_type(events, "execution_finished")[0]["feedback"]
    assert feedback.endswith("RESULT\n") and "characters omitted" in feedback
    assert llm.requests[1]["messages"][-1]["content"] == feedback


async def test_a_hundred_megabytes_of_output_are_cut_and_the_run_goes_on(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    code = "import sys\nfor _ in range(100):\n    sys.stdout.write('y' * 1_000_000)\nprint('\\nEND')"
    llm.turns.extend([f"<Code>\n```python\n{code}\n```\n</Code>", ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path)
    events = await checks.finished(run_id, "completed")
    [cell] = [c for c in cells_of(events) if c.cell_type == "code"]
    text = cell.outputs[0]["text"]
    assert text.endswith("y\nEND\n") and len(text) < 2_100_000
    assert "[... 98" in text  # about 98 million characters cut, said in the cell
