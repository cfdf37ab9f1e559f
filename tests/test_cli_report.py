"""`jupyter deepanalyze report` and `models` as a user runs them, against a scripted server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd

from jupyter_deepanalyze.notebook import NotebookBuilder, attach_images, events_to_notebook
from jupyter_deepanalyze.protocol import DataFile, build_first_message

from .test_openai_compat import free_port

JUPYTER = str(Path(sys.executable).parent / "jupyter")
QUESTION = "Which teaching method (treatment) performs better?"

TURNS = [
    "<Analyze>\nCompare success rates by treatment.\n</Analyze>\n<Code>\n```python\nimport pandas as pd\n"
    "df = pd.read_csv('Simpson.csv')\nprint(df.groupby('treatment')['success'].mean().round(3))\n```\n</Code>",
    "<Understand>\nTreatment 0 looks better overall; check departments.\n</Understand>\n<Code>\n```python\n"
    "rates = df.groupby(['dept', 'treatment'])['success'].mean().unstack()\nrates['gap'] = rates[1] - rates[0]\n"
    "print(rates.round(3))\nprint(rates['missing'])\n```\n</Code>",
    "<Analyze>\nFix the column and plot.\n</Analyze>\n<Code>\n```python\nimport matplotlib.pyplot as plt\n"
    "ax = rates[[0, 1]].plot(kind='bar')\nplt.savefig('rates.png')\nplt.show()\n```\n</Code>",
    "<Answer>\n# Which teaching method is better?\n\nTreatment 1 wins inside every department "
    "(Simpson's paradox).\n\n![Success by department](rates.png)\n</Answer>",
]


def report(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JUPYTER, "deepanalyze", "report", *args], capture_output=True, text=True, timeout=timeout)


def test_report_writes_a_notebook_from_the_kernels_real_outputs(
    scripted_llm, simpson_csv: Path, tmp_path: Path
) -> None:
    llm = scripted_llm(TURNS)
    out = tmp_path / "r.ipynb"
    done = report(str(simpson_csv), "-q", QUESTION, "-o", str(out), "--model", llm.url, "--html")
    assert done.returncode == 0, done.stderr

    # The requests are PROTOCOL.md byte for byte.
    first = build_first_message(QUESTION, [DataFile("Simpson.csv", simpson_csv.stat().st_size)])
    df = pd.read_csv(simpson_csv)
    first_output = f"{df.groupby('treatment')['success'].mean().round(3)}\n"
    rates = df.groupby(["dept", "treatment"])["success"].mean().unstack()
    rates["gap"] = rates[1] - rates[0]
    second_output = (
        f"{rates.round(3)}\n[Error]:\nTraceback (most recent call last):\n"
        "  File \"<string>\", line 4, in <module>\n    print(rates['missing'])\nKeyError: 'missing'"
    )
    last = llm.requests[-1]["messages"]
    assert [m["role"] for m in last] == ["user"] + ["assistant", "execute"] * 3
    assert last[0]["content"] == first
    assert [m["content"] for m in last[1::2]] == TURNS[:3]  # sent back with </Code> restored
    assert last[2]["content"] == first_output
    assert last[4]["content"] == second_output
    assert last[6]["content"].startswith("[figure 1: ") and last[6]["content"].endswith(" PNG]\n")

    # The notebook: valid, markdown steps, executed code with real outputs, a report.
    notebook = nbformat.read(out, as_version=4)
    nbformat.validate(notebook)
    roles = [c.metadata["deepanalyze"]["role"] for c in notebook.cells]
    assert roles == ["title", "analyze", "code", "understand", "code", "analyze", "code", "report"]
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code_cells] == [1, 2, 3]
    assert code_cells[0].outputs[0]["text"] == first_output
    assert code_cells[1].outputs[-1]["output_type"] == "error"
    assert code_cells[1].outputs[-1]["ename"] == "KeyError"
    assert any("image/png" in o.get("data", {}) for o in code_cells[2].outputs)
    report_cell = notebook.cells[-1]
    assert "![Success by department](attachment:rates.png)" in report_cell.source
    assert "image/png" in report_cell.attachments["rates.png"]
    assert notebook.metadata["deepanalyze"]["status"] == "completed"
    assert QUESTION in notebook.cells[0].source

    # Inputs are copies in the run folder; HTML export exists; progress went to stderr.
    assert (tmp_path / "r_files" / "Simpson.csv").read_bytes() == simpson_csv.read_bytes()
    assert (tmp_path / "r_files" / "rates.png").exists()
    assert "Simpson's paradox" in (tmp_path / "r.html").read_text()
    assert "step 2" in done.stderr and "ran: error" in done.stderr and "run completed" in done.stderr


def test_a_dead_model_url_exits_within_seconds_saying_how_to_start_one(simpson_csv: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    done = report(str(simpson_csv), "-q", "Q", "-o", str(tmp_path / "r.ipynb"), "--model", url)
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    # They passed --model: the message says to start the server there, not to pass --model.
    message = f"No model server at {url}: start it (e.g. `vllm serve MODEL --port PORT`) or check the address."
    assert done.stderr.strip().splitlines()[-1] == f"jupyter deepanalyze: {message}"
    # The notebook is written all the same, saying why (as the README promises).
    cells = nbformat.read(tmp_path / "r.ipynb", as_version=4).cells
    assert [c.metadata["deepanalyze"]["role"] for c in cells] == ["title", "status"]
    assert cells[-1].source == f"**Run failed:** {message}"


def test_an_existing_notebook_is_kept_unless_forced(scripted_llm, tmp_path: Path) -> None:
    out = tmp_path / "r.ipynb"
    out.write_text("mine")
    llm = scripted_llm(["<Answer>done</Answer>"])
    refused = report("-q", "Q", "-o", str(out), "--model", llm.url)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert out.read_text() == "mine" and llm.requests == []
    forced = report("-q", "Q", "-o", str(out), "--model", llm.url, "--force")
    assert forced.returncode == 0, forced.stderr
    assert nbformat.read(out, as_version=4).cells[-1].source == "done"


def test_bad_arguments_get_one_line(tmp_path: Path) -> None:
    missing = report(str(tmp_path / "nope.csv"), "-q", "Q", "-o", str(tmp_path / "r.ipynb"), "--model", "http://x/v1")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"jupyter deepanalyze: no such file or folder: {tmp_path / 'nope.csv'}"
    wrong = report("-q", "Q", "-o", str(tmp_path / "r.txt"))
    assert wrong.returncode == 2 and "must be an .ipynb file" in wrong.stderr
    spec = report("-q", "Q", "-o", str(tmp_path / "r.ipynb"), "--model", "gpt-4")
    assert spec.returncode == 2 and "Unknown model spec 'gpt-4'" in spec.stderr  # a usage error
    out = str(tmp_path / "r.ipynb")
    for args, line in [
        (("-q", "Q", "-o", out, "--max-rounds", "many"), "--max-rounds: expected a whole number, not 'many'"),
        (("-q", "Q", "-o", out, "--max-rounds", "0"), "--max-rounds must be at least 1"),
        (("-q", "Q", "-o", out, "--temperature", "9"), "--temperature must be at most 2.0"),
        (("-q", "Q", "-o", out, "--colour", "red"), "unknown option --colour (--help lists the options)"),
        (("-o", out, "-q"), "--question needs a value"),
        (("-q", "Q"), "the notebook to write is missing: pass -o OUT.ipynb"),
        (("-o", out), "the question is missing: pass -q QUESTION"),
    ]:
        done = report(*args)
        assert (done.returncode, done.stderr) == (2, f"jupyter deepanalyze: {line}\n"), args


def test_a_run_that_hits_max_rounds_still_writes_the_notebook(scripted_llm, tmp_path: Path) -> None:
    llm = scripted_llm(["<Code>print('again')</Code>"] * 2)
    out = tmp_path / "r.ipynb"
    done = report("-q", "Q", "-o", str(out), "--model", llm.url, "--max-rounds", "2")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "jupyter deepanalyze: the run stopped after 2 rounds without a final answer"
    )
    cells = nbformat.read(out, as_version=4).cells
    assert cells[-1].metadata["deepanalyze"]["role"] == "status"
    assert [c.outputs[0]["text"] for c in cells if c.cell_type == "code"] == ["again\n", "again\n"]


def test_ctrl_c_cancels_the_run_and_writes_what_it_has(scripted_llm, tmp_path: Path) -> None:
    llm = scripted_llm(
        ["<Code>\nprint('started', flush=True)\nopen('running', 'w').close()\nwhile True:\n    pass\n</Code>"]
    )
    out = tmp_path / "r.ipynb"
    process = subprocess.Popen(
        [JUPYTER, "deepanalyze", "report", "-q", "Q", "-o", str(out), "--model", llm.url],
        stderr=subprocess.PIPE, text=True,
    )
    running = tmp_path / "r_files" / "running"  # the model's code is in its loop
    deadline = time.monotonic() + 60
    while not running.exists():
        assert time.monotonic() < deadline and process.poll() is None, "the code never ran"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=30)[1]
    assert process.returncode == 130, rest
    assert "the run was cancelled" in rest
    cells = nbformat.read(out, as_version=4).cells
    assert cells[-1].source == "**Run cancelled.**"
    assert cells[-2].outputs[0]["text"] == "started\n"


def test_models_shows_the_resolved_model(scripted_llm) -> None:
    llm = scripted_llm([])
    done = subprocess.run([JUPYTER, "deepanalyze", "models", "--model", llm.url], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"spec:    {llm.url}" in done.stdout and "name:    DeepAnalyze-8B" in done.stdout
    assert "dialect: native" in done.stdout and "context: 32768 tokens" in done.stdout
    assert llm.requests == []  # probed with GET /models only


def test_replaying_events_gives_the_same_notebook(tmp_path: Path) -> None:
    events = [
        {"seq": 0, "type": "run_started", "run_id": "r1", "question": "Q", "model": "m", "kernel_id": None},
        {"seq": 1, "type": "cell", "run_id": "r1", "cell_id": "da-r1-1", "cell_type": "code", "source": "print(1)",
         "metadata": {"deepanalyze": {"run_id": "r1", "step": 1, "role": "code"}}},
        {"seq": 2, "type": "output", "run_id": "r1", "cell_id": "da-r1-1",
         "output": {"output_type": "stream", "name": "stdout", "text": "1"}},
        {"seq": 3, "type": "output", "run_id": "r1", "cell_id": "da-r1-1",
         "output": {"output_type": "stream", "name": "stdout", "text": "\n"}},
        {"seq": 4, "type": "execution_finished", "run_id": "r1", "cell_id": "da-r1-1", "status": "ok",
         "execution_count": 7, "feedback": "1\n", "code": "print( 1 )"},
        {"seq": 5, "type": "cell", "run_id": "r1", "cell_id": "da-r1-2", "cell_type": "markdown",
         "source": "![plot](p.png) ![away](../x.png)",
         "metadata": {"deepanalyze": {"run_id": "r1", "step": 2, "role": "report"}}},
        {"seq": 6, "type": "run_finished", "run_id": "r1", "status": "completed", "report_cell_id": "da-r1-2",
         "error": None},
    ]
    once = events_to_notebook(events)
    builder = NotebookBuilder()
    builder.apply_all(events[:4])
    twice = builder.apply_all(events)  # a replay after a reconnect
    assert once == twice
    (code, markdown) = once.cells
    assert (code.id, code.source, code.execution_count) == ("da-r1-1", "print( 1 )", 7)
    assert code.outputs == [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    (tmp_path / "p.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (tmp_path.parent / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert attach_images(once, tmp_path) == 1
    assert markdown.source == "![plot](attachment:p.png) ![away](../x.png)"  # nothing outside the folder
    nbformat.validate(once)


def test_a_notebook_honours_clear_output_and_display_updates_across_cells() -> None:
    def cell(step: int) -> dict:
        return {"seq": step, "type": "cell", "run_id": "r1", "cell_id": f"c{step}", "cell_type": "code",
                "source": "", "metadata": {"deepanalyze": {"run_id": "r1", "step": step, "role": "code"}}}

    def out(seq: int, cell_id: str, text: str, **extra: object) -> dict:
        output = {"output_type": "display_data", "data": {"text/plain": text}, "metadata": {}}
        return {"seq": seq, "type": "output", "run_id": "r1", "cell_id": cell_id, "output": output, **extra}

    def stream(seq: int, cell_id: str, text: str) -> dict:
        output = {"output_type": "stream", "name": "stdout", "text": text}
        return {"seq": seq, "type": "output", "run_id": "r1", "cell_id": cell_id, "output": output}

    def clear(seq: int, cell_id: str, wait: bool) -> dict:
        return {"seq": seq, "type": "clear_output", "run_id": "r1", "cell_id": cell_id, "wait": wait}

    events = [
        cell(1),
        out(2, "c1", "v1", display_id="d"),
        stream(3, "c1", "step 0\n"),
        clear(4, "c1", True),  # waits: the outputs stay until the next one
        out(5, "c1", "v1", display_id="d"),
        stream(6, "c1", "step 1\n"),
        cell(7),
        stream(8, "c7", "gone\n"),
        clear(9, "c7", False),
        out(10, "c7", "v2", display_id="d", update=True),  # every output of the run with "d"
        stream(11, "c7", "left\n"),
    ]
    builder = NotebookBuilder()
    builder.apply_all(events[:4])
    first = builder.notebook.cells[0]
    assert [o.get("text", o.get("data", {}).get("text/plain")) for o in first.outputs] == ["v1", "step 0\n"]
    notebook = builder.apply_all(events)
    first, second = notebook.cells
    assert first.outputs == [
        {"output_type": "display_data", "data": {"text/plain": "v2"}, "metadata": {}},
        {"output_type": "stream", "name": "stdout", "text": "step 1\n"},
    ]
    assert second.outputs == [{"output_type": "stream", "name": "stdout", "text": "left\n"}]
    assert events_to_notebook(events) == notebook  # the same events, the same notebook
