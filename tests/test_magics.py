"""``%analyze`` / ``%%analyze`` in real kernels (nbclient) and in plain IPython.

The model is the scripted OpenAI-compatible server; everything else is real: the
notebooks are executed by nbclient on ipykernel, and the assertions read what a user
sees in the executed notebook (and what the model was sent).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nbclient import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_deepanalyze.agent import SKIPPED_FEEDBACK
from jupyter_deepanalyze.config import DeepAnalyze
from jupyter_deepanalyze.events import MIME_TYPE
from jupyter_deepanalyze.feedback import strip_ansi
from jupyter_deepanalyze.notebook import events_to_notebook

from .scripted_llm import ScriptedLLM

FRAME = 'import pandas as pd\ndf = pd.DataFrame({"group": ["a", "a", "b", "b"], "sales": [1, 2, 3, 4]})'
QUESTION = "Which group sells more?"

TURNS = [
    "<Analyze>Sum the sales per group.</Analyze>\n<Code>\n```python\n"
    "by_group = df.groupby('group')['sales'].sum()\nprint(df.shape)\nby_group\n```\n</Code>",
    "<Code>\n```python\nshare = by_group / by_group.sum()\nshare['missing']\n```\n</Code>",
    "<Understand>Group c does not exist; plot the sums.</Understand>\n<Code>\n```python\n"
    "import matplotlib.pyplot as plt\nax = by_group.plot.bar()\nplt.title('Sales by group')\nplt.show()\n```\n</Code>",
    "<Answer>Group **b** sells more: 7 against 3.</Answer>",
]
ERROR_FEEDBACK = (
    "[Error]:\nTraceback (most recent call last):\n"
    '  File "<string>", line 2, in <module>\n'
    "    share['missing']\nKeyError: 'missing'"
)


def execute(
    cells: list[str], cwd: Path, *, env: dict[str, str] | None = None, timeout: int = 90
) -> NotebookNode:
    """Run ``cells`` as a notebook in a fresh kernel started in ``cwd``; errors stay in outputs."""
    notebook = new_notebook(cells=[new_code_cell(source) for source in cells])
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=timeout,
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env={**os.environ, **(env or {})})
    return notebook


def text(cell: NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def errors(cell: NotebookNode) -> list[NotebookNode]:
    return [o for o in cell.outputs if o.output_type == "error"]


def run_display(cell: NotebookNode) -> NotebookNode:
    """The magic's one display output (updated in place while the run went on)."""
    displays = [o for o in cell.outputs if o.output_type == "display_data" and MIME_TYPE in o.data]
    assert len(displays) == 1, cell.outputs
    return displays[0]


def events(cell: NotebookNode) -> list[dict[str, Any]]:
    return list(run_display(cell).data[MIME_TYPE]["events"])


def code_cells(cell: NotebookNode) -> list[NotebookNode]:
    return [c for c in events_to_notebook(events(cell)).cells if c.cell_type == "code"]


# --------------------------------------------------------------- one analysis run


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NotebookNode, ScriptedLLM]]:
    """A notebook analyzing ``df`` with ``r = %analyze``, then reading what it left."""
    with ScriptedLLM(TURNS) as llm:
        notebook = execute(
            [
                FRAME,
                "%load_ext jupyter_deepanalyze",
                f'r = %analyze df "{QUESTION}" --model {llm.url}',
                "print(type(by_group).__name__, by_group.to_dict())",
                "print(r.status, r.run_id)\nprint(r.report)\nprint(len(r.to_notebook().cells), len(r.events))",
                "import matplotlib.pyplot as plt\nprint('open figures:', plt.get_fignums())",
                "r",
            ],
            tmp_path_factory.mktemp("analysis"),
        )
        yield notebook, llm


def test_the_model_is_told_about_the_dataframe(analysis: tuple[NotebookNode, ScriptedLLM]) -> None:
    _, llm = analysis
    first = llm.requests[0]["messages"][0]["content"]
    assert first.startswith(f"# Instruction\n{QUESTION}\n\n# Data\n")
    assert '"name": "df"' in first and '"type": "pandas.DataFrame"' in first
    assert "sales (int64)" in first


def test_results_of_the_models_code_appear_live_in_the_cell(
    analysis: tuple[NotebookNode, ScriptedLLM],
) -> None:
    notebook, llm = analysis
    cell = notebook.cells[2]
    assert errors(cell) == [] and text(cell) == ""
    first = code_cells(cell)[0]
    assert first.source.startswith("by_group = df.groupby")
    assert [o.output_type for o in first.outputs] == ["stream", "execute_result"]
    assert first.outputs[0].text == "(4, 2)\n"
    assert "a    3" in first.outputs[1].data["text/plain"]
    assert llm.requests[1]["messages"][-1] == {
        "role": "execute",
        "content": f"(4, 2)\n{first.outputs[1].data['text/plain']}\n",
    }
    shown = run_display(cell).data
    assert "(4, 2)" in shown["text/html"] and "(4, 2)" in shown["text/plain"]


def test_variables_the_models_code_creates_stay_in_the_users_namespace(
    analysis: tuple[NotebookNode, ScriptedLLM],
) -> None:
    notebook, _ = analysis
    assert text(notebook.cells[3]) == "Series {'a': 3, 'b': 7}\n"
    # The model's blocks are not counted as the user's cells.
    assert [c.execution_count for c in notebook.cells] == [1, 2, 3, 4, 5, 6, 7]


def test_the_returned_object_holds_the_report(analysis: tuple[NotebookNode, ScriptedLLM]) -> None:
    notebook, _ = analysis
    status_line, report, sizes = text(notebook.cells[4]).splitlines()
    assert status_line.split()[0] == "completed"
    assert report == "Group **b** sells more: 7 against 3."
    assert int(sizes.split()[0]) == 7  # title, analyze, code, code, understand, code, report


def test_the_display_carries_the_run_bundle_with_html_and_text_fallbacks(
    analysis: tuple[NotebookNode, ScriptedLLM],
) -> None:
    notebook, _ = analysis
    display = run_display(notebook.cells[2])
    bundle = display.data[MIME_TYPE]
    run_id = text(notebook.cells[4]).split()[1]
    assert bundle["version"] == 1 and bundle["run_id"] == run_id
    kinds = [e["type"] for e in bundle["events"]]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and "delta" not in kinds
    assert bundle["events"][-1]["status"] == "completed"
    assert [e["seq"] for e in bundle["events"]] == sorted(e["seq"] for e in bundle["events"])
    assert "Group <strong>b</strong> sells more" in display.data["text/html"]
    assert "Group **b** sells more: 7 against 3." in display.data["text/plain"]
    assert display.metadata == {} and "transient" not in display
    # Displaying `r` later shows the run again, from the same events.
    again = run_display(notebook.cells[6])
    assert again.data[MIME_TYPE]["events"] == bundle["events"]


def test_model_code_errors_are_shown_and_fed_back_to_the_model(
    analysis: tuple[NotebookNode, ScriptedLLM],
) -> None:
    notebook, llm = analysis
    failing = code_cells(notebook.cells[2])[1]
    assert [o.output_type for o in failing.outputs] == ["error"]
    assert failing.outputs[0].ename == "KeyError"
    assert llm.requests[2]["messages"][-1] == {"role": "execute", "content": ERROR_FEEDBACK}
    assert "KeyError" in run_display(notebook.cells[2]).data["text/html"]


def test_figures_are_captured_in_the_run_and_not_shown_loose(
    analysis: tuple[NotebookNode, ScriptedLLM],
) -> None:
    notebook, llm = analysis
    plot = code_cells(notebook.cells[2])[2]
    images = [o for o in plot.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert llm.requests[3]["messages"][-1]["content"].startswith("[figure 1: ")
    assert 'src="data:image/png;base64,' in run_display(notebook.cells[2]).data["text/html"]
    # The cell has the run display and nothing else; no figure is left open.
    assert len(notebook.cells[2].outputs) == 1
    assert text(notebook.cells[5]) == "open figures: []\n"


async def test_the_display_is_one_output_updated_in_place_while_the_run_goes_on(scripted_llm: Any) -> None:
    """Read the kernel's messages as a frontend does: one display, then updates of it."""
    from jupyter_client import AsyncKernelManager

    llm = scripted_llm(TURNS)
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel()
    client = manager.client()
    client.start_channels()
    messages: list[dict[str, Any]] = []
    try:
        await client.wait_for_ready(timeout=60)
        await client.execute_interactive(f"{FRAME}\n%load_ext jupyter_deepanalyze", timeout=60)
        reply = await client.execute_interactive(
            f'%analyze df "{QUESTION}" --model {llm.url}', output_hook=messages.append, timeout=90
        )
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok"
    shown = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data")]
    assert shown[0]["msg_type"] == "display_data"
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert all(m["msg_type"] == "update_display_data" for m in shown[1:]) and len(shown) >= 4
    assert {m["content"]["transient"]["display_id"] for m in shown} == {display_id}
    texts = [m["content"]["data"]["text/plain"] for m in shown]
    # Each code block was on screen before it ran, and its output after.
    running = [t for t in texts if t.endswith("Running code…")]
    assert any("by_group = df.groupby" in t and "(4, 2)" not in t for t in running)
    assert any("(4, 2)" in t and "share['missing']" in t and "KeyError" not in t for t in running)
    assert texts[-1].endswith("Run completed.")
    # Nothing else reached the cell: no loose figure, stream or error.
    assert {m["msg_type"] for m in messages} <= {
        "display_data",
        "update_display_data",
        "status",
        "execute_input",
    }


# ----------------------------------------------------------------- other behaviours


def test_bad_input_gives_one_line_errors_and_no_model_request(scripted_llm: Any, tmp_path: Path) -> None:
    llm = scripted_llm(TURNS)
    lines = [
        f'%analyze nope "{QUESTION}" --model {llm.url}',
        f"%analyze df --model {llm.url}",
        f'%analyze df "unclosed --model {llm.url}',
        f'%analyze df "{QUESTION}" --max-rounds 0 --model {llm.url}',
        f'%analyze df "{QUESTION}" --colour red',
        f'%analyze df "{QUESTION}" --model http://127.0.0.1:9/v1',
        f"%%analyze df --model {llm.url}\n",
    ]
    notebook = execute([FRAME, "%load_ext jupyter_deepanalyze", *lines], tmp_path)
    messages = []
    for cell in notebook.cells[2:]:
        # IPython shows a UsageError as one stderr line, never a traceback.
        assert [(o.output_type, o.get("name")) for o in cell.outputs] == [("stream", "stderr")], cell.outputs
        messages.append(strip_ansi(cell.outputs[0].text))
    assert all(m.startswith("UsageError: ") and m.count("\n") == 1 for m in messages), messages
    assert (
        messages[0]
        == "UsageError: %analyze: no variable named 'nope' (quote the question if it has several words)\n"
    )
    assert "needs a question" in messages[1]
    assert "No closing quotation" in messages[2]
    assert "--max-rounds" in messages[3]
    assert "unrecognized arguments: --colour red" in messages[4]
    assert "No model server at http://127.0.0.1:9/v1" in messages[5]
    assert "empty" in messages[6]
    assert llm.requests == []


def test_the_cell_magic_asks_about_the_files_in_the_cwd_with_the_model_from_the_environment(
    scripted_llm: Any, tmp_path: Path
) -> None:
    llm = scripted_llm(
        [
            "<Code>\n```python\nimport os\nprint(sorted(os.listdir('.')))\n```\n</Code>",
            "<Answer>Two files.</Answer>",
        ]
    )
    (tmp_path / "sales.csv").write_text("a,b\n1,2\n")
    (tmp_path / "notes.txt").write_text("hello")
    notebook = execute(
        ["%load_ext jupyter_deepanalyze", "%%analyze\nWhat is in\nthese files?"],
        tmp_path,
        env={"DEEPANALYZE_MODEL": llm.url},
    )
    first = llm.requests[0]["messages"][0]["content"]
    assert first.startswith("# Instruction\nWhat is in\nthese files?\n\n# Data\nFile 1:\n")
    assert '"name": "notes.txt"' in first and '"name": "sales.csv"' in first
    assert "Variables already defined" not in first
    assert events(notebook.cells[1])[-1]["status"] == "completed"


def test_config_sets_model_and_timeout_and_a_block_past_it_is_interrupted_while_the_run_goes_on(
    scripted_llm: Any, tmp_path: Path
) -> None:
    llm = scripted_llm(
        [
            "<Code>\n```python\nimport time\nkept = 'yes'\nwhile True:\n    time.sleep(0.05)\n```\n</Code>",
            "<Code>\n```python\nprint(kept)\n```\n</Code>",
            "<Answer>Done.</Answer>",
        ]
    )
    notebook = execute(
        [
            "%load_ext jupyter_deepanalyze",
            f'%config DeepAnalyze.model = "{llm.url}"\n%config DeepAnalyze.execution_timeout = 1.0',
            'r = %analyze "Loop."',
            "print(r.status)",
        ],
        tmp_path,
    )
    assert llm.requests[1]["messages"][-1]["content"] == "[Timeout]: execution exceeded 1 seconds"
    assert llm.requests[2]["messages"][-1]["content"] == "yes\n"
    finished = [e for e in events(notebook.cells[2]) if e["type"] == "execution_finished"]
    assert [e["status"] for e in finished] == ["timeout", "ok"]
    assert errors(notebook.cells[2]) == [] and text(notebook.cells[3]) == "completed\n"


def test_cleared_and_updated_outputs_show_as_left_and_the_model_is_told_so(
    scripted_llm: Any, tmp_path: Path
) -> None:
    llm = scripted_llm(
        [
            "<Code>\n```python\nfrom IPython.display import clear_output, display\nfor i in range(3):\n"
            "    clear_output(wait=True)\n    print(f'step {i}')\nh = display('v1', display_id=True)\n```\n</Code>",
            "<Code>\n```python\nh.update('v2')\nprint('updated')\n```\n</Code>",
            "<Answer>Done.</Answer>",
        ]
    )
    notebook = execute(
        [
            "%load_ext jupyter_deepanalyze",
            f'r = %analyze "Show progress." --model {llm.url}',
            "code = [c for c in r.to_notebook().cells if c.cell_type == 'code']\n"
            "print([[o.get('text') or o['data']['text/plain'] for o in c.outputs] for c in code])",
        ],
        tmp_path,
    )
    told = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "execute"]
    assert told == ["step 2\n'v1'\n", "updated\n"]
    assert text(notebook.cells[2]) == "[['step 2\\n', \"'v2'\"], ['updated\\n']]\n"
    shown = run_display(notebook.cells[1]).data["text/html"]
    assert "step 2" in shown and "step 1" not in shown and "&#x27;v2&#x27;" in shown


async def run_and_interrupt(
    cells: list[str], cwd: Path, interrupt_cell: int, ready: Any, *, timeout: int = 90
) -> tuple[NotebookNode, float]:
    """Execute ``cells``; interrupt the kernel once ``ready()`` holds while ``interrupt_cell`` runs.

    Returns the notebook and the seconds the interrupted cell took to finish after the interrupt.
    """
    notebook = new_notebook(cells=[new_code_cell(source) for source in cells])
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=timeout,
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    async with client.async_setup_kernel(env=dict(os.environ)):
        assert client.km is not None
        for index, cell in enumerate(notebook.cells):
            if index != interrupt_cell:
                await client.async_execute_cell(cell, index)
                continue
            running = asyncio.ensure_future(client.async_execute_cell(cell, index))
            deadline = time.monotonic() + 60
            while not ready() and time.monotonic() < deadline and not running.done():
                await asyncio.sleep(0.05)
            assert ready(), "the run never got to the point to interrupt"
            await client.km.interrupt_kernel()
            interrupted = time.monotonic()
            await running
            took = time.monotonic() - interrupted
    return notebook, took


async def test_an_interrupt_while_the_models_code_loops_ends_the_run_cancelled(
    scripted_llm: Any, tmp_path: Path
) -> None:
    llm = scripted_llm(
        [
            "<Code>\n```python\nimport time\nopen('started', 'w').close()\nprogress = 'looping'\n"
            "print('looping', flush=True)\nwhile True:\n    time.sleep(0.05)\n```\n</Code>",
            "<Answer>never asked for</Answer>",
        ]
    )
    notebook, took = await run_and_interrupt(
        [
            FRAME,
            "%load_ext jupyter_deepanalyze",
            f'r = %analyze df "Loop forever." --model {llm.url}',
            "print(r.status, progress)",
        ],
        tmp_path,
        2,
        ready=(tmp_path / "started").exists,
    )
    cell = notebook.cells[2]
    assert errors(cell) == [], cell.outputs  # no traceback dump
    assert took < 30
    run = events(cell)
    looped = [e for e in run if e["type"] == "execution_finished"]
    assert [e["status"] for e in looped] == ["interrupted"]
    assert run[-1]["type"] == "run_finished" and run[-1]["status"] == "cancelled"
    outputs = [e["output"] for e in run if e["type"] == "output"]
    assert outputs[0] == {"output_type": "stream", "name": "stdout", "text": "looping\n"}
    assert "Run cancelled" in run_display(cell).data["text/plain"]
    assert len(llm.requests) == 1  # the model was not asked again
    assert text(notebook.cells[3]) == "cancelled looping\n"


async def test_an_interrupt_while_the_model_streams_stops_the_stream(
    scripted_llm: Any, tmp_path: Path
) -> None:
    long_turn = "<Analyze>" + "thinking " * 400 + "</Analyze>"
    llm = scripted_llm([long_turn, "<Answer>never asked for</Answer>"], chunk_delay=0.02)
    notebook, took = await run_and_interrupt(
        [
            "%load_ext jupyter_deepanalyze",
            f"%%analyze --model {llm.url}\nThink at length.",
            "print('kernel alive')",
        ],
        tmp_path,
        1,
        ready=lambda: len(llm.requests) == 1,
    )
    cell = notebook.cells[1]
    assert errors(cell) == [] and took < 30
    run = events(cell)
    assert run[-1]["status"] == "cancelled"
    assert not any(e["type"] == "segment" and e["tag"] == "Analyze" for e in run)  # cut mid-stream
    assert len(llm.requests) == 1
    assert text(notebook.cells[2]) == "kernel alive\n"


# -------------------------------------------------------------------- plain IPython


def run_ipython(script: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    path = cwd / "script.ipy"
    path.write_text(script)
    return subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor", str(path)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "MPLBACKEND": "agg"},
    )


def test_plain_ipython_prints_the_run_as_text(scripted_llm: Any, tmp_path: Path) -> None:
    llm = scripted_llm(TURNS)
    done = run_ipython(
        f'{FRAME}\n%load_ext jupyter_deepanalyze\nr = %analyze df "{QUESTION}" --model {llm.url}\n'
        "print('STATUS', r.status, by_group.to_dict())\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"## DeepAnalyze: {QUESTION}" in out
    assert "```python\nby_group = df.groupby('group')['sales'].sum()" in out
    assert "    (4, 2)\n" in out
    assert "    KeyError: 'missing'" in out
    assert "    [figure 1: " in out
    assert "Group **b** sells more: 7 against 3." in out
    assert "STATUS completed {'a': 3, 'b': 7}" in out
    assert "\x1b[" not in out and "<html" not in out and "Traceback" not in done.stderr


def test_approve_asks_before_each_block_and_skip_is_told_to_the_model(
    scripted_llm: Any, tmp_path: Path
) -> None:
    llm = scripted_llm(
        [
            "<Code>\n```python\nskipped = True\n```\n</Code>",
            "<Code>\n```python\nran = True\nprint('second block ran')\n```\n</Code>",
            "<Answer>Done.</Answer>",
        ]
    )
    done = run_ipython(
        f'%load_ext jupyter_deepanalyze\nr = %analyze "Go." --approve --model {llm.url}\n'
        "print('DEFINED', 'skipped' in dir(), 'ran' in dir(), r.status)\n",
        tmp_path,
        stdin="s\ny\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Run this code?") == 2
    assert "second block ran" in done.stdout
    assert "DEFINED False True completed" in done.stdout
    assert llm.requests[1]["messages"][-1] == {"role": "execute", "content": SKIPPED_FEEDBACK}


def test_config_help_with_current_values_never_shows_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # What `%config DeepAnalyze` prints once the extension registered its settings.
    monkeypatch.setenv("DEEPANALYZE_API_KEY", "sk-not-for-printing")
    settings = DeepAnalyze(model="http://gpu:8000/v1")
    assert settings.api_key == "sk-not-for-printing"
    shown = DeepAnalyze.class_get_help(settings)
    assert "sk-not-for-printing" not in shown
    assert "Current: 'http://gpu:8000/v1'" in shown
