"""The golden run: one event file and its notebook that both languages' sinks must agree on.

Owns the scripted runs that write ``tests/golden/run-events.jsonl`` (one JSON event per
line) and ``tests/golden/run-notebook.ipynb`` (what ``NotebookBuilder`` makes of them),
and the normalization of what differs between two recordings of the same runs.

The runs are real: the ``Agent`` talks to the scripted OpenAI-compatible server
(``tests/scripted_llm.py``) and runs its code in a fresh ``KernelExecutor`` kernel, in a
folder holding ``Simpson.csv`` from ``../shared``. Together they cover every event type
and cell role: a title; Analyze, Understand and a note (text outside any tag); code with
stream, display, result and error outputs; a progress loop that clears its output and
a display updated by id; a figure saved as a file (an artifact); approvals run as
proposed, run after the user's edit, and skipped; the report with its Files list; and
a second run, a follow-up of the first (``parent_run_id``), that stops at ``max_rounds``
with its status cell.

Normalized: ``run_id`` is fixed (the Agent's ``run_id`` parameter); consecutive ``delta``
events of one step (with the tag of the last) and consecutive ``stream`` outputs of one
cell are merged (how they are split depends on timing, what they add up to does not),
then ``seq`` is renumbered. Execution
counts need nothing: the kernel is fresh. Events carry no timestamps.

Regenerate after changing the agent, an executor or a sink (then review the diff):
``python -m tests.golden.generate`` from the repository root. The Python test
(``test_golden.py``) and the vitest test (``labextension/test/golden.spec.ts``) read the
committed files.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat

from jupyter_deepanalyze.agent import Agent, Approval, Task
from jupyter_deepanalyze.execution.kernel import KernelExecutor
from jupyter_deepanalyze.llm.openai_compat import OpenAICompatModel
from jupyter_deepanalyze.notebook import NotebookBuilder
from jupyter_deepanalyze.workspace import list_data_files, stage_inputs

from ..conftest import shared_dir
from ..scripted_llm import ScriptedLLM

HERE = Path(__file__).resolve().parent
EVENTS_FILE = HERE / "run-events.jsonl"
NOTEBOOK_FILE = HERE / "run-notebook.ipynb"

RUN_ID = "901de0000000000000000000000000a1"
SECOND_RUN_ID = "901de0000000000100000000000000b2"
QUESTION = "Which teaching method (treatment) performs better?"
SECOND_QUESTION = "How many students does each department have?"


def _turn(code: str, text: str = "", tag: str | None = "Analyze") -> str:
    prose = f"<{tag}>\n{text}\n</{tag}>\n" if tag else f"{text}\n"
    return f"{prose}<Code>\n```python\n{code}\n```\n</Code>"


LOAD = """import pandas as pd
from IPython.display import display

df = pd.read_csv('Simpson.csv')
print(df.shape)
display(df.head(3))
df['success'].mean()"""

PROGRESS = """import time

from IPython.display import Markdown, clear_output, display

rates = {}
for number, dept in enumerate(sorted(df['dept'].unique()), start=1):
    clear_output(wait=True)
    print(f'department {number}: {dept}')
    rates[dept] = df[df['dept'] == dept].groupby('treatment')['success'].mean().round(3).to_dict()
    time.sleep(0.5)  # a slow step: the executor forwards each state, so sinks see the clear
status = display(Markdown('comparing treatments...'), display_id='progress')
time.sleep(0.5)
status.update(Markdown('compared within every department'))
rates"""

FAILING = """print('overall success by treatment:')
print(df.groupby('treatment')['success'].mean().round(3))
rates['overall']"""

PLOT = """import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(4, 3))
df.groupby('dept')['success'].mean().plot.bar(ax=ax)
ax.set_axis_off()
fig.savefig('success_by_dept.png')"""
PLOT_AS_EDITED = PLOT.replace("figsize=(4, 3)", "figsize=(2, 1.5)")

EXPORT = "df.to_csv('copy.csv', index=False)"

REPORT = """<Answer>
# Treatment 1 performs better

Within every department treatment 1 has the higher success rate, although the overall
rates favour treatment 0: Simpson's paradox.

![Success by department](success_by_dept.png)
</Answer>"""

TURNS = [
    _turn(LOAD, "Load Simpson.csv and look at its size and first rows."),
    _turn(PROGRESS, "Each row is one student: department, treatment and success.", "Understand"),
    _turn(FAILING, "The overall rates may hide what happens within departments.", None),
    _turn(PLOT, "A chart of the success rate by department."),
    _turn(EXPORT, "Keep a copy of the data."),
    REPORT,
]
SECOND_TURNS = [_turn("print(df['dept'].value_counts().sort_index())", "Count the students per department.")]

APPROVALS = [
    Approval("run"),
    Approval("run"),
    Approval("run"),
    Approval("run", code=PLOT_AS_EDITED),
    Approval("skip"),
]
"""The user's answer to each code cell of the first run, in order."""


async def _run(
    llm: ScriptedLLM, executor: KernelExecutor, agent_options: dict[str, Any], task: Task
) -> tuple[Agent, list[dict[str, Any]]]:
    model = OpenAICompatModel(llm.url)
    try:
        agent = Agent(model, executor, **agent_options)
        return agent, [event.to_json() async for event in agent.run(task)]
    finally:
        await model.aclose()


async def record() -> list[dict[str, Any]]:
    """Runs both scripted runs in one fresh kernel; returns their events, normalized."""
    answers = iter(APPROVALS)

    async def approve(cell_id: str, code: str) -> Approval:
        return next(answers)

    with tempfile.TemporaryDirectory(prefix="deepanalyze-golden-") as folder:
        workdir = Path(folder)
        stage_inputs([shared_dir() / "examples" / "simpson" / "Simpson.csv"], workdir)
        executor = await KernelExecutor.start(cwd=workdir)
        try:
            with ScriptedLLM(TURNS) as llm:
                parent, first = await _run(
                    llm,
                    executor,
                    {"run_id": RUN_ID, "approval": approve, "max_rounds": 10},
                    Task(QUESTION, list_data_files(workdir)),
                )
            with ScriptedLLM(SECOND_TURNS) as llm:
                _, second = await _run(
                    llm,
                    executor,
                    {"run_id": SECOND_RUN_ID, "max_rounds": 1},
                    Task(SECOND_QUESTION, list_data_files(workdir, ["Simpson.csv"]), follows=parent.conversation()),
                )
        finally:
            await executor.shutdown()
    return normalize(first) + normalize(second)


def _mergeable(previous: dict[str, Any], event: dict[str, Any]) -> bool:
    if previous["type"] != event["type"] or previous["run_id"] != event["run_id"]:
        return False
    if event["type"] == "delta":
        return previous["step"] == event["step"]
    if event["type"] == "output":
        before, output = previous["output"], event["output"]
        return (
            previous["cell_id"] == event["cell_id"]
            and before.get("output_type") == output.get("output_type") == "stream"
            and before.get("name") == output.get("name")
            and not any(e.get("display_id") or e.get("update") for e in (previous, event))
        )
    return False


def normalize(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merges what timing splits (deltas of a step, a cell's consecutive stream outputs)
    and renumbers ``seq`` per run."""
    merged: list[dict[str, Any]] = []
    for event in events:
        event = json.loads(json.dumps(event))
        if merged and _mergeable(merged[-1], event):
            previous = merged[-1]
            if event["type"] == "delta":
                previous["text"] += event["text"]
                previous["tag"] = event.get("tag")
            else:
                previous["output"]["text"] = _text(previous["output"]) + _text(event["output"])
            continue
        merged.append(event)
    seqs: dict[str, int] = {}
    for event in merged:
        event["seq"] = seqs.get(event["run_id"], 0)
        seqs[event["run_id"]] = event["seq"] + 1
    return merged


def _text(output: dict[str, Any]) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else str(text)


def build_notebook(events: Iterable[dict[str, Any]]) -> nbformat.NotebookNode:
    return NotebookBuilder().apply_all(events)


def events_text(events: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n" for event in events)


def read_events(path: Path = EVENTS_FILE) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def main() -> None:
    events = asyncio.run(record())
    EVENTS_FILE.write_text(events_text(events), encoding="utf-8")
    notebook = build_notebook(events)
    nbformat.validate(notebook)
    nbformat.write(notebook, str(NOTEBOOK_FILE))
    print(f"wrote {len(events)} events to {EVENTS_FILE} and {len(notebook.cells)} cells to {NOTEBOOK_FILE}")


if __name__ == "__main__":
    main()
