"""``jupyter deepanalyze report`` always leaves a notebook: stopped by SIGTERM, by a second
Ctrl-C while a cancel is slow, or with a model that does not answer at all."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import psutil

from jupyter_deepanalyze.eval.local_server import free_port
from jupyter_deepanalyze.headless import QUIT_ERROR

JUPYTER = str(Path(sys.executable).parent / "jupyter")
# Each block also writes a line to the kernel's own stderr, which is the command's: the
# signal that the code is running.
STUBBORN = (
    "<Code>\n```python\nimport os, time\nprint('ignoring interrupts', flush=True)\n"
    "os.write(2, b'CODE RUNNING\\n')\nwhile True:\n"
    "    try:\n        time.sleep(0.05)\n    except KeyboardInterrupt:\n        pass\n```\n</Code>"
)
LOOP = (
    "<Code>\n```python\nimport os\nprint('looping', flush=True)\nos.write(2, b'CODE RUNNING\\n')\n"
    "while True:\n    pass\n```\n</Code>"
)


def start_report(llm: Any, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [JUPYTER, "deepanalyze", "report", "-q", "Q", "-o", str(out), "--model", llm.url],
        stderr=subprocess.PIPE, text=True,
    )


def wait_for_line(process: subprocess.Popen[str], text: str) -> list[str]:
    """stderr lines up to the first that holds ``text`` (the command's own progress)."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never came:\n{''.join(lines)}")


def check_notebook(out: Path, status_cell: str, *, output: str) -> None:
    cells = nbformat.read(out, as_version=4).cells
    roles = [c.metadata["deepanalyze"]["role"] for c in cells]
    assert roles == ["title", "code", "status"]
    assert cells[-1].source == status_cell
    # What the block printed is kept (when the quit came after it reached the command).
    assert [o.get("text") for o in cells[1].outputs if o["output_type"] == "stream"] in ([output], [])


def test_sigterm_cancels_the_run_and_writes_the_notebook(scripted_llm: Any, tmp_path: Path) -> None:
    llm = scripted_llm([LOOP])
    out = tmp_path / "r.ipynb"
    process = start_report(llm, out)
    wait_for_line(process, "CODE RUNNING")
    kernels = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[1]
    assert process.returncode == 143, rest
    assert "Terminated: stopping the run" in rest and "jupyter deepanalyze: the run was cancelled" in rest
    check_notebook(out, "**Run cancelled.**", output="looping\n")
    assert nbformat.read(out, as_version=4).cells[1].outputs[0]["text"] == "looping\n"
    assert not [k for k in kernels if k.is_running()]


def test_a_second_ctrl_c_during_a_slow_cancel_still_writes_the_notebook(scripted_llm: Any, tmp_path: Path) -> None:
    llm = scripted_llm([STUBBORN])  # its cancel is slow: the code ignores the interrupt
    out = tmp_path / "r.ipynb"
    process = start_report(llm, out)
    wait_for_line(process, "CODE RUNNING")
    kernels = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGINT)
    wait_for_line(process, "Stopping (Ctrl-C again to quit at once)")
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=60)[1]
    assert process.returncode == 130, rest
    assert "Quitting now: writing what the run has so far." in rest
    check_notebook(out, f"**Run cancelled.** {QUIT_ERROR}", output="ignoring interrupts\n")
    assert not [k for k in kernels if k.is_running()]


def test_a_model_that_does_not_answer_still_gets_a_notebook_saying_so(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "r.ipynb"
    done = subprocess.run(
        [JUPYTER, "deepanalyze", "report", "-q", "Q", "-o", str(out), "--model", url],
        capture_output=True, text=True, timeout=120,
    )
    message = f"No model server at {url}: start it (e.g. `vllm serve MODEL --port PORT`) or check the address."
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"jupyter deepanalyze: {message}"
    cells = nbformat.read(out, as_version=4).cells
    assert [c.metadata["deepanalyze"]["role"] for c in cells] == ["title", "status"]
    assert cells[-1].source == f"**Run failed:** {message}"
