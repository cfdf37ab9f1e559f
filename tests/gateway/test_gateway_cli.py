"""`jupyter deepanalyze eval` and `report` with `--gateway-url`: kernels on a real Jupyter Kernel
Gateway, task files shipped through the kernels, a scripted model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat

from ..conftest import RunningGateway
from ..test_cli_report import QUESTION, TURNS, report
from ..test_eval_run import CODE, dabench_policy, evaluate, records


def _token_env(gateway: RunningGateway) -> dict[str, str]:
    return {**os.environ, "JUPYTER_GATEWAY_AUTH_TOKEN": gateway.token}


def test_eval_runs_two_dabench_tasks_on_gateway_kernels(
    scripted_llm, shared, kernel_gateway: RunningGateway, tmp_path: Path
) -> None:
    llm = scripted_llm([dabench_policy(CODE)] * 4)
    out = tmp_path / "run"
    done = evaluate(
        "dabench", "--ids", "0,5", "--model", llm.url, "--out", str(out), "--concurrency", "2",
        "--gateway-url", kernel_gateway.url, "--gateway-token", kernel_gateway.token,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 2 and summary["statuses"] == {"completed": 2}
    assert summary["abq"] == 0.5  # id 0 right, id 5 wrong, as locally
    result = records(out, "0")[-1]
    assert result["messages"][2]["content"] == "34.65\n"  # computed from the shipped CSV
    assert kernel_gateway.token not in done.stdout + done.stderr


def test_report_on_a_gateway_ships_the_files_and_brings_back_what_the_run_wrote(
    scripted_llm, simpson_csv: Path, kernel_gateway: RunningGateway, tmp_path: Path
) -> None:
    llm = scripted_llm(TURNS)
    out = tmp_path / "r.ipynb"
    import subprocess

    from ..test_cli_report import JUPYTER

    done = subprocess.run(
        [JUPYTER, "deepanalyze", "report", str(simpson_csv), "-q", QUESTION, "-o", str(out),
         "--model", llm.url, "--gateway-url", kernel_gateway.url],
        capture_output=True, text=True, timeout=180, env=_token_env(kernel_gateway),
    )
    assert done.returncode == 0, done.stderr
    notebook = nbformat.read(out, as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells[1].outputs[-1]["ename"] == "KeyError"
    report_cell = notebook.cells[-1]
    # The figure the run saved on the kernel's side came back and is embedded.
    assert (tmp_path / "r_files" / "rates.png").exists()
    assert "image/png" in report_cell.attachments["rates.png"]
    assert (tmp_path / "r_files" / "Simpson.csv").read_bytes() == simpson_csv.read_bytes()
    assert f"on {kernel_gateway.url}" in done.stderr


def test_bad_gateway_settings_get_one_line(tmp_path: Path) -> None:
    bad = report("x.csv", "-q", "q", "-o", str(tmp_path / "r.ipynb"), "--model", "http://127.0.0.1:9/v1",
                 "--gateway-url", "gateway:8888")
    assert bad.returncode == 2
    assert bad.stderr == (
        "jupyter deepanalyze: --gateway-url: the gateway URL must look like http://host:port, not 'gateway:8888'\n"
    )
    alone = evaluate("dabench", "--shared-workdir", str(tmp_path))
    assert alone.returncode == 2
    assert alone.stderr == "jupyter deepanalyze: --shared-workdir is for kernels on a gateway: pass --gateway-url too\n"
