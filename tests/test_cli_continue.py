"""`jupyter deepanalyze report --continue` and the report's exports (PDF, Markdown), as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from pypdf import PdfReader

from jupyter_deepanalyze.protocol import build_first_message
from jupyter_deepanalyze.recorder import recorded_conversation
from jupyter_deepanalyze.workspace import list_data_files

from .test_cli_report import JUPYTER, QUESTION, TURNS, report

FOLLOW_UP = "How large is the gap in each department?"
FOLLOW_TURNS = [
    # `rates` exists only if the report's cells ran again in the rebuilt kernel.
    "<Analyze>\nReuse the rates table.\n</Analyze>\n<Code>\n```python\n"
    "gap = (rates[1] - rates[0]).round(3)\ngap.to_csv('gap.csv')\nprint(gap.to_dict())\n```\n</Code>",
    "<Answer>\n# The gap\n\nTreatment 1 leads in both departments.\n</Answer>",
]


@pytest.fixture
def first_report(scripted_llm, simpson_csv: Path, tmp_path: Path) -> Path:
    llm = scripted_llm(TURNS)
    out = tmp_path / "r.ipynb"
    done = report(str(simpson_csv), "-q", QUESTION, "-o", str(out), "--model", llm.url)
    assert done.returncode == 0, done.stderr
    return out


def test_continue_rebuilds_the_kernel_and_appends_the_follow_up_to_the_same_notebook(
    scripted_llm, first_report: Path
) -> None:
    before = nbformat.read(first_report, as_version=4)
    recorded = recorded_conversation(before)
    assert recorded is not None and recorded.run_id == before.metadata["deepanalyze"]["run_id"]
    llm = scripted_llm(FOLLOW_TURNS)

    done = report("--continue", str(first_report), "-q", FOLLOW_UP, "--model", llm.url, "--markdown")

    assert done.returncode == 0, done.stderr
    assert "rebuilding the kernel: running the notebook's 3 code cells again" in done.stderr
    assert "code cell 2 of 3 ended error" in done.stderr  # it failed the first time too
    assert "file r_files/gap.csv (" in done.stderr and "created)" in done.stderr
    # The model is sent the recorded conversation, then the question with the files now there.
    folder = first_report.with_name("r_files")
    files = list_data_files(folder, sorted(p.name for p in folder.iterdir()))
    files = [f for f in files if f.name != "gap.csv"]  # written by the follow-up itself
    question = {"role": "user", "content": build_first_message(FOLLOW_UP, files)}
    assert llm.requests[0]["messages"] == [dict(m) for m in recorded.messages] + [question]
    assert '"name": "rates.png"' in question["content"]

    after = nbformat.read(first_report, as_version=4)
    nbformat.validate(after)
    old = len(before.cells)
    assert after.cells[:old] == before.cells  # the report's own cells are kept as they were
    new = after.cells[old:]
    assert [c.metadata["deepanalyze"]["role"] for c in new] == ["title", "analyze", "code", "report"]
    code = new[2]
    assert code.execution_count == 4  # after the three cells run again
    assert code.outputs[0]["text"].startswith("{'A_hard': ")
    assert "\n\n**Files**\n\n- [gap.csv](r_files/gap.csv) (" in new[3].source
    metadata = after.metadata["deepanalyze"]
    assert metadata["parent_run_id"] == recorded.run_id and metadata["status"] == "completed"
    continued = recorded_conversation(after)
    assert continued is not None and continued.run_id == metadata["run_id"]
    assert continued.messages[: len(recorded.messages) + 1] == (*recorded.messages, question)
    assert first_report.with_suffix(".md").read_text().count("# The gap") == 1


def test_continue_refuses_a_notebook_it_cannot_continue(tmp_path: Path) -> None:
    plain = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), plain)

    refused = report("--continue", str(plain), "-q", "more?", "--model", "http://127.0.0.1:9/v1")
    missing = report("--continue", str(tmp_path / "nope.ipynb"), "-q", "more?")
    no_question = report("--continue", str(plain))

    assert refused.returncode == 2 and "holds no recorded run to continue" in refused.stderr
    assert missing.returncode == 2 and "no such notebook" in missing.stderr
    assert no_question.returncode == 2 and "follow-up question is missing" in no_question.stderr
    assert all(len(r.stderr.strip().splitlines()) == 1 for r in (refused, missing, no_question))


def test_report_exports_a_real_pdf_and_markdown_with_its_images(
    scripted_llm, simpson_csv: Path, tmp_path: Path
) -> None:
    llm = scripted_llm(TURNS)
    out = tmp_path / "r.ipynb"

    done = report(
        str(simpson_csv), "-q", QUESTION, "-o", str(out), "--model", llm.url, "--pdf", "--markdown", timeout=240
    )

    assert done.returncode == 0, done.stderr
    pdf = PdfReader(out.with_suffix(".pdf"))
    assert len(pdf.pages) >= 2  # a title, three code cells with a table and a figure, the report
    text = " ".join(" ".join(page.extract_text().split()) for page in pdf.pages)
    assert "Which teaching method is better?" in text
    assert "Treatment 1 wins inside every department" in text
    assert "rates.png" in text  # the Files list
    markdown = out.with_suffix(".md").read_text()
    assert "# Which teaching method is better?" in markdown
    images = sorted(p.name for p in (tmp_path / "r_images").iterdir())
    assert images and all(f"r_images/{name}" in markdown for name in images)
    assert "[rates.png](r_files/rates.png)" in markdown
    assert nbformat.read(out, as_version=4).metadata["kernelspec"]["name"] == "python3"


def test_a_pdf_without_chromium_is_one_line_and_the_notebook_is_still_written(
    scripted_llm, simpson_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPANALYZE_CHROMIUM", str(tmp_path / "no-chromium"))
    llm = scripted_llm(TURNS)
    out = tmp_path / "r.ipynb"

    done = report(str(simpson_csv), "-q", QUESTION, "-o", str(out), "--model", llm.url, "--pdf")

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"jupyter deepanalyze: PDF export needs Chromium: none at {tmp_path / 'no-chromium'} "
        "(`apt-get install chromium`, or set DEEPANALYZE_CHROMIUM to a Chromium binary)"
    )
    assert out.is_file() and not out.with_suffix(".pdf").exists()


def test_the_notebook_names_the_kernel_the_run_used(scripted_llm, simpson_csv: Path, tmp_path: Path) -> None:
    spec = tmp_path / "kernels" / "da-other"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Another Python", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    llm = scripted_llm(TURNS)
    out = tmp_path / "r.ipynb"
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path)}

    done = subprocess.run(
        [JUPYTER, "deepanalyze", "report", str(simpson_csv), "-q", QUESTION, "-o", str(out), "--model", llm.url,
         "--kernel", "da-other"],
        capture_output=True, text=True, timeout=120, env=env,
    )

    assert done.returncode == 0, done.stderr
    metadata = nbformat.read(out, as_version=4).metadata
    assert metadata["kernelspec"] == {"name": "da-other", "display_name": "Another Python", "language": "python"}
    assert metadata["language_info"]["name"] == "python"
