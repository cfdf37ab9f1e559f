"""Runs on a notebook's live kernel, driven only through the HTTP/WS API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from jupyter_core.paths import jupyter_data_dir

from jupyter_deepanalyze.events import cell_id_for
from jupyter_deepanalyze.protocol import DataFile, VariableInfo, build_first_message
from jupyter_deepanalyze.server.eventlog import read_events

from ..scripted_llm import ScriptedLLM
from .conftest import QUESTION, DeepAnalyzeAPI, NotebookKernel

USE_DF = (
    "<Analyze>\nSum column a of df and read the sales file.\n</Analyze>\n"
    "<Code>\n```python\nimport os\ntotal = int(df['a'].sum())\nsales = pd.read_csv('../data/sales.csv')\n"
    "print(total, sales.shape, os.path.basename(os.getcwd()))\n```\n</Code>"
)
ANSWER = "<Answer>\n# Report\n\nThe total of a is 6.\n</Answer>"
LOOP = "<Code>\n```python\nprint('looping', flush=True)\nwhile True:\n    pass\n```\n</Code>"


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


async def test_a_run_uses_the_notebooks_kernel_its_df_and_files_beside_it(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM, jp_root_dir: Path
) -> None:
    await notebook.run("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})")
    (jp_root_dir / "data").mkdir()
    (jp_root_dir / "data" / "sales.csv").write_text("month,sales\n1,10\n2,20\n")
    llm.turns.extend([USE_DF, ANSWER])

    reply = await api.call(
        "POST",
        "runs",
        body={"question": QUESTION, "notebook_path": notebook.path, "files": ["data/sales.csv"], "variables": ["df"]},
    )
    assert reply.code == 201
    assert reply.body["kernel_id"] == notebook.kernel_id
    run_id = reply.body["run_id"]
    events = await api.watch(run_id)

    # The first message describes df (and names the file as the kernel's cwd sees it).
    b_dtype = str(pd.DataFrame({"b": ["x"]}).dtypes["b"])
    assert llm.requests[0]["messages"] == [
        {
            "role": "user",
            "content": build_first_message(
                QUESTION,
                [DataFile("../data/sales.csv", len("month,sales\n1,10\n2,20\n"))],
                [VariableInfo("df", "pandas.DataFrame", [3, 2], (("a", "int64"), ("b", b_dtype)))],
            ),
        }
    ]
    # The model's code used the user's df in the notebook's folder, and the run completed.
    [finished] = of_type(events, "execution_finished")
    assert (finished["status"], finished["feedback"]) == ("ok", "6 (2, 2) work\n")
    assert events[-1] == {
        "seq": len(events) - 1,
        "type": "run_finished",
        "run_id": run_id,
        "status": "completed",
        "report_cell_id": cell_id_for(run_id, 3),
        "error": None,
    }
    assert [e["seq"] for e in events] == list(range(len(events)))
    # What the agent created stays in the user's kernel.
    assert await notebook.run("print(total)") == "6\n"

    snapshot = await api.call("GET", "runs", run_id)
    assert snapshot.body == {"run_id": run_id, "kernel_id": notebook.kernel_id, "status": "completed", "events": events}
    logged = read_events(Path(jupyter_data_dir()) / "deepanalyze" / "runs" / f"{run_id}.jsonl")
    assert logged == events
    listed = await api.call("GET", "runs", params={"kernel_id": notebook.kernel_id})
    assert listed.body["runs"] == [
        {
            "run_id": run_id,
            "kernel_id": notebook.kernel_id,
            "status": "completed",
            "question": QUESTION,
            "parent_run_id": None,
        }
    ]


async def test_one_run_per_kernel_and_cancel_stops_an_infinite_loop(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM
) -> None:
    llm.turns.extend([LOOP, ANSWER])
    run_id = await api.start_run(kernel_id=notebook.kernel_id)
    ws = await api.connect(run_id)
    seen = await api.receive(ws, until="output")  # the loop is running now
    assert seen[-1]["output"]["text"] == "looping\n"

    second = await api.call("POST", "runs", body={"question": QUESTION, "notebook_path": notebook.path})
    assert second.code == 409
    assert run_id in second.body["message"]

    started = time.monotonic()
    cancelled = await api.call("POST", "runs", run_id, "cancel")
    elapsed = time.monotonic() - started
    print(f"cancel during an infinite loop ended the run in {elapsed:.2f} s")
    assert cancelled.body == {"run_id": run_id, "status": "cancelled"}
    rest = await api.receive(ws)
    assert of_type(rest, "execution_finished")[0]["status"] == "interrupted"
    assert rest[-1]["type"] == "run_finished" and rest[-1]["status"] == "cancelled"

    # The kernel answers the next execution, and takes a new run.
    assert await notebook.run("print(1 + 1)") == "2\n"
    again = await api.start_run(kernel_id=notebook.kernel_id)
    assert (await api.watch(again))[-1]["status"] == "completed"


async def test_cancel_while_the_model_is_streaming(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM
) -> None:
    llm.chunk_delay = 0.05
    llm.turns.append("<Analyze>\n" + "thinking about it " * 400 + "\n</Analyze>")
    run_id = await api.start_run(notebook_path=notebook.path)
    ws = await api.connect(run_id)
    await api.receive(ws, until="delta")

    started = time.monotonic()
    cancelled = await api.call("POST", "runs", run_id, "cancel")
    print(f"cancel while streaming ended the run in {time.monotonic() - started:.2f} s")
    assert cancelled.body["status"] == "cancelled"
    rest = await api.receive(ws)
    assert rest[-1]["status"] == "cancelled"
    assert len(llm.requests) == 1


async def test_an_unreachable_model_fails_the_run_with_one_clear_line(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, unreachable_model: str
) -> None:
    run_id = await api.start_run(notebook_path=notebook.path, model=unreachable_model)
    events = await api.watch(run_id)
    finished = events[-1]
    assert finished["type"] == "run_finished" and finished["status"] == "failed"
    assert finished["error"].startswith(f"No model server at {unreachable_model}: start it")
    assert "\n" not in finished["error"] and "Traceback" not in finished["error"]
    assert (await api.call("GET", "runs", run_id)).body["status"] == "failed"
