"""The agent loop end to end: scripted model server, real kernel, the event contract."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from jupyter_deepanalyze.agent import Agent, Approval, Task
from jupyter_deepanalyze.events import CELL_ROLES, Event, RunFinished, cell_id_for
from jupyter_deepanalyze.execution.kernel import KernelExecutor
from jupyter_deepanalyze.llm.openai_compat import OpenAICompatModel
from jupyter_deepanalyze.protocol import DataFile, build_first_message
from jupyter_deepanalyze.recorder import RunRecorder, record_run
from jupyter_deepanalyze.workspace import list_data_files

from ..scripted_llm import run_agent

LOAD = (
    "<Analyze>\nLoad the data and compare success rates by treatment.\n</Analyze>\n"
    "<Code>\n```python\nimport pandas as pd\ndf = pd.read_csv('Simpson.csv')\n"
    "print(df.shape)\nprint(df.groupby('treatment')['success'].mean())\n```\n</Code>"
)
FAIL = (
    "<Understand>\nTreatment 0 looks better overall.\n</Understand>\n"
    "<Code>\n```python\nprint('checking')\nprint(df['missing'])\n```\n</Code>"
)
ANSWER = "<Answer>\n# Report\n\nTreatment 1 wins within every department.\n</Answer>"


def simpson_task(workdir: Path) -> Task:
    return Task("Which teaching method (treatment) performs better?", list_data_files(workdir))


async def test_a_run_sends_protocol_messages_and_emits_the_event_contract(
    scripted_llm, executor: KernelExecutor, workdir: Path, simpson_csv: Path
) -> None:
    llm = scripted_llm([LOAD + "\n<Execute>\nhallucinated\n</Execute>", FAIL, ANSWER])
    agent, events = await run_agent(llm, executor, simpson_task(workdir))

    # What the server received, byte for byte (PROTOCOL.md "The loop").
    first = build_first_message(
        "Which teaching method (treatment) performs better?",
        [DataFile("Simpson.csv", simpson_csv.stat().st_size)],
    )
    df = pd.read_csv(simpson_csv)
    load_output = f"{df.shape}\n{df.groupby('treatment')['success'].mean()}\n"
    error_output = (
        "checking\n[Error]:\nTraceback (most recent call last):\n"
        '  File "<string>", line 2, in <module>\n'
        "    print(df['missing'])\nKeyError: 'missing'"
    )
    assert [r["messages"] for r in llm.requests] == [
        [{"role": "user", "content": first}],
        [{"role": "user", "content": first}, {"role": "assistant", "content": LOAD},
         {"role": "execute", "content": load_output}],
        [{"role": "user", "content": first}, {"role": "assistant", "content": LOAD},
         {"role": "execute", "content": load_output}, {"role": "assistant", "content": FAIL},
         {"role": "execute", "content": error_output}],
    ]
    assert all(r["stop"] == ["</Code>"] and r["add_generation_prompt"] is False for r in llm.requests)

    # The events: numbered, typed, cells addressed by deterministic ids.
    assert [e.seq for e in events] == list(range(len(events)))
    kinds = [e.type for e in events if e.type != "delta"]
    assert kinds[:2] == ["run_started", "cell"] and kinds[-1] == "run_finished"
    assert kinds.count("execution_finished") == 2
    cells = [e for e in events if e.type == "cell"]
    roles = [e.metadata["deepanalyze"]["role"] for e in cells]
    assert roles == ["title", "analyze", "code", "understand", "code", "report"]
    assert all(set(e.metadata["deepanalyze"]) == {"run_id", "step", "role"} for e in cells)
    assert [e.cell_id for e in cells] == [cell_id_for(agent.run_id, step) for step in range(6)]
    assert cells[2].source == (
        "import pandas as pd\ndf = pd.read_csv('Simpson.csv')\n"
        "print(df.shape)\nprint(df.groupby('treatment')['success'].mean())"
    )
    finished = [e for e in events if e.type == "execution_finished"]
    assert [(e.status, e.execution_count, e.feedback) for e in finished] == [
        ("ok", 1, load_output), ("error", 2, error_output)
    ]
    outputs = [e for e in events if e.type == "output"]
    assert {e.cell_id for e in outputs} == {cells[2].cell_id, cells[4].cell_id}
    run_finished = events[-1]
    assert isinstance(run_finished, RunFinished)
    assert (run_finished.status, run_finished.report_cell_id, run_finished.error) == (
        "completed",
        cells[5].cell_id,
        None,
    )
    assert cells[5].source == "# Report\n\nTreatment 1 wins within every department."
    # Streamed text reaches chat views as deltas of the step in progress.
    deltas = "".join(e.text for e in events if e.type == "delta" and e.step == 1)
    assert deltas == "\nLoad the data and compare success rates by treatment.\n"
    assert agent.messages[-1] == {"role": "assistant", "content": ANSWER}


async def test_a_turn_without_code_does_not_end_the_run(scripted_llm, executor: KernelExecutor) -> None:
    llm = scripted_llm(["<Analyze>First, think.</Analyze>", "Some words outside tags.", ANSWER])
    _, events = await run_agent(llm, executor, Task("Q"))
    assert events[-1].status == "completed"
    assert llm.requests[2]["messages"][1:] == [
        {"role": "assistant", "content": "<Analyze>First, think.</Analyze>"},
        {"role": "assistant", "content": "Some words outside tags."},
    ]
    notes = [e for e in events if e.type == "cell" and e.metadata["deepanalyze"]["role"] == "note"]
    assert [n.source for n in notes] == ["Some words outside tags."]


async def test_max_rounds_ends_the_run_with_a_status_cell(scripted_llm, executor: KernelExecutor) -> None:
    llm = scripted_llm(["<Code>print(1)</Code>"] * 3)
    _, events = await run_agent(llm, executor, Task("Q"), max_rounds=2)
    assert len(llm.requests) == 2
    assert events[-1].status == "max_rounds"
    status = events[-2]
    assert status.type == "cell" and status.metadata["deepanalyze"]["role"] == "status"
    assert "2 rounds" in status.source


async def test_cancel_during_an_infinite_loop_ends_cancelled_and_the_kernel_answers(
    scripted_llm, executor: KernelExecutor
) -> None:
    llm = scripted_llm(["<Code>\nprint('spinning', flush=True)\nwhile True:\n    pass\n</Code>"])
    model = OpenAICompatModel(llm.url)
    agent = Agent(model, executor)
    events: list[Event] = []
    cancelled_at = 0.0
    async for event in agent.run(Task("spin")):
        events.append(event)
        if event.type == "output" and not cancelled_at:  # the code runs
            cancelled_at = time.monotonic()
            agent.cancel()
    await model.aclose()
    assert time.monotonic() - cancelled_at < 2.0
    assert [e.status for e in events if e.type == "execution_finished"] == ["interrupted"]
    assert events[-1].status == "cancelled" and events[-2].source == "**Run cancelled.**"
    assert (await executor.execute("print('answering')")).feedback == "answering\n"


async def test_cancel_while_the_model_streams_stops_the_stream(scripted_llm, executor: KernelExecutor) -> None:
    llm = scripted_llm(["<Analyze>" + "slow words " * 400 + "</Analyze>"], chunk_delay=0.01)
    model = OpenAICompatModel(llm.url)
    agent = Agent(model, executor)
    statuses = []
    async for event in agent.run(Task("Q")):
        if event.type == "delta":
            agent.cancel()
        if event.type == "run_finished":
            statuses.append(event.status)
    await model.aclose()
    assert statuses == ["cancelled"]


async def test_approval_runs_edited_code_skips_and_tells_the_model(scripted_llm, executor: KernelExecutor) -> None:
    llm = scripted_llm([
        "<Code>\n```python\nprint('original')\n```\n</Code>",
        "<Code>\n```python\nprint('unwanted')\n```\n</Code>",
        ANSWER,
    ])
    asked: list[tuple[str, str]] = []

    async def approve(cell_id: str, code: str) -> Approval:
        asked.append((cell_id, code))
        if len(asked) == 1:
            return Approval("run", code="print('edited')")
        return Approval("skip")

    _, events = await run_agent(llm, executor, Task("Q"), approval=approve)
    assert [code for _, code in asked] == ["print('original')", "print('unwanted')"]
    approvals = [e for e in events if e.type == "approval_required"]
    assert [a.cell_id for a in approvals] == [cell_id for cell_id, _ in asked]
    finished = [e for e in events if e.type == "execution_finished"]
    assert [(e.status, e.code, e.feedback) for e in finished] == [
        ("ok", "print('edited')", "edited\n"),
        ("skipped", None, "[Skipped]: the user chose not to run this code."),
    ]
    messages = llm.requests[1]["messages"]
    assert messages[1] == {"role": "assistant", "content": "<Code>\n```python\nprint('edited')\n```\n</Code>"}
    assert messages[2] == {"role": "execute", "content": "edited\n"}


async def test_text_after_the_first_code_block_is_never_sent_back(scripted_llm, executor: KernelExecutor) -> None:
    llm = scripted_llm(["<Code>print(3)</Code><Execute>\n4\n</Execute><Answer>4</Answer>", ANSWER], honour_stop=False)
    _, events = await run_agent(llm, executor, Task("Q"))
    assert llm.requests[1]["messages"][1:] == [
        {"role": "assistant", "content": "<Code>print(3)</Code>"},
        {"role": "execute", "content": "3\n"},
    ]
    assert events[-1].status == "completed"


async def test_a_model_failure_ends_the_run_failed_with_its_message(scripted_llm, executor: KernelExecutor) -> None:
    llm = scripted_llm(["<Code>print(1)</Code>"])  # the second request finds no turn
    _, events = await run_agent(llm, executor, Task("Q"))
    assert events[-1].status == "failed"
    assert "no more turns" in events[-1].error and "Traceback" not in events[-1].error
    assert events[-2].metadata["deepanalyze"]["role"] == "status"


async def test_an_empty_turn_fails_the_run(scripted_llm, executor: KernelExecutor) -> None:
    _, events = await run_agent(scripted_llm([""]), executor, Task("Q"))
    assert (events[-1].status, events[-1].error) == ("failed", "The model returned an empty turn.")


async def test_a_dead_kernel_fails_the_run_instead_of_hanging(scripted_llm, executor: KernelExecutor) -> None:
    llm = scripted_llm(["<Code>\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n</Code>"])
    started = time.monotonic()
    _, events = await run_agent(llm, executor, Task("Q"))
    assert time.monotonic() - started < 15
    assert [e.status for e in events if e.type == "execution_finished"] == ["dead"]
    assert events[-1].status == "failed" and "kernel died" in events[-1].error


async def test_an_unreachable_model_ends_failed_with_the_clear_line(executor: KernelExecutor) -> None:
    model = OpenAICompatModel("http://127.0.0.1:9/v1", retry_delays=(0.05,))
    agent = Agent(model, executor)
    events = [e async for e in agent.run(Task("Q"))]
    await model.aclose()
    assert [e.type for e in events] == ["run_started", "cell", "cell", "run_finished"]
    assert events[-1].error.startswith("No model server at http://127.0.0.1:9/v1")


def test_every_role_the_agent_uses_is_declared() -> None:
    assert set(CELL_ROLES) == {"title", "analyze", "understand", "note", "code", "report", "status"}


async def test_a_cancel_before_the_run_begins_ends_it_cancelled_at_once(scripted_llm, executor: KernelExecutor) -> None:
    llm = scripted_llm([ANSWER])
    model = OpenAICompatModel(llm.url)
    agent = Agent(model, executor)
    agent.cancel()
    agent.cancel()  # again: nothing more happens
    events = [event async for event in agent.run(Task("Q"))]
    await model.aclose()
    assert [e.type for e in events] == ["run_started", "cell", "cell", "run_finished"]
    assert events[2].source == "**Run cancelled.**"
    assert (events[-1].status, events[-1].error) == ("cancelled", None)
    assert llm.requests == []  # the model was never asked


async def test_cleared_and_updated_outputs_reach_the_notebook_and_the_model_as_left(
    scripted_llm, executor: KernelExecutor
) -> None:
    progress = (
        "<Code>\n```python\nfrom IPython.display import clear_output, display\n"
        "for i in range(3):\n    clear_output(wait=True)\n    print(f'step {i}')\n"
        "h = display('v1', display_id=True)\n```\n</Code>"
    )
    update = "<Code>\n```python\nh.update('v2')\nprint('updated')\n```\n</Code>"
    llm = scripted_llm([progress, update, ANSWER])
    model = OpenAICompatModel(llm.url)
    recorder = await record_run(Agent(model, executor), Task("Q"))
    await model.aclose()
    told = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "execute"]
    assert told == ["step 2\n'v1'\n", "updated\n"]  # what was left in the cell, not every step
    first, second = (c for c in recorder.notebook.cells if c.cell_type == "code")
    assert first.outputs == [
        {"output_type": "stream", "name": "stdout", "text": "step 2\n"},
        {"output_type": "display_data", "data": {"text/plain": "'v2'"}, "metadata": {}},
    ]
    assert second.outputs == [{"output_type": "stream", "name": "stdout", "text": "updated\n"}]
    assert (recorder.outcome.status, recorder.outcome.report) == (
        "completed",
        "# Report\n\nTreatment 1 wins within every department.",
    )


async def test_the_recorder_says_why_a_run_did_not_complete(scripted_llm, executor: KernelExecutor) -> None:
    llm = scripted_llm(["<Code>print(1)</Code>"] * 2)
    model = OpenAICompatModel(llm.url)
    recorder = await record_run(Agent(model, executor, max_rounds=2), Task("Q"), RunRecorder(notebook=False))
    await model.aclose()
    outcome = recorder.outcome
    assert (outcome.status, outcome.report, outcome.question) == ("max_rounds", "", "Q")
    assert outcome.reason(max_rounds=2) == "the run stopped after 2 rounds without a final answer"
    with pytest.raises(ValueError, match="keeps no notebook"):
        _ = recorder.notebook


@pytest.mark.parametrize("chunk_delay", [0.0, 0.06])
async def test_streamed_deltas_carry_the_tag_of_the_step_they_belong_to(
    scripted_llm, executor: KernelExecutor, chunk_delay: float
) -> None:
    turn = (
        "A note first.\n<Analyze>\nPlan the comparison step by step.\n</Analyze>\n"
        "<Understand>\nThe rates differ by department.\n</Understand>\n<Answer>\nDone.\n</Answer>"
    )
    # A burst (a step's text flushed when the step ends), and chunks slower than the
    # agent's flush interval (every step streams as several deltas).
    llm = scripted_llm([turn], chunk_delay=chunk_delay)
    _, events = await run_agent(llm, executor, Task("Plan it"))

    segments = {e.step: e for e in events if e.type == "segment"}
    deltas = [e for e in events if e.type == "delta"]
    assert len(deltas) > (len(segments) if chunk_delay else 0)
    for step, segment in segments.items():
        streamed = [d for d in deltas if d.step == step]
        assert {d.tag for d in streamed} == {segment.tag}, (segment.tag, [d.tag for d in streamed])
        assert "".join(d.text for d in streamed).strip() == segment.text.strip()


def test_data_files_list_a_csv_or_tsv_header_as_columns(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("\ufeffdate, region ,revenue\n2025-01-01,North,1\n")
    (tmp_path / "b.tsv").write_text("x\ty\n1\t2\n")
    (tmp_path / "c.txt").write_text("not a table\n")
    (tmp_path / "empty.csv").write_text("")
    files = {f.name: tuple(f.columns) for f in list_data_files(tmp_path)}
    assert files == {"a.csv": ("date", "region", "revenue"), "b.tsv": ("x", "y"), "c.txt": (), "empty.csv": ()}
