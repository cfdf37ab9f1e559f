"""The DeepAnalyze sidebar end to end: real Chromium, real JupyterLab and server extension.

A user opens a notebook whose first cell defines ``df``, runs it, opens the sidebar and
asks; the scripted model's steps become markdown, code (run in the notebook's own
kernel, so its outputs come from ``df``) and the report, in that notebook. Stop ends a
long run, whether the kernel or the model is busy; approvals Run (with the user's edit)
and Skip; a reloaded page (with or without what it remembered) resumes its run, and a
question while another tab's run holds the kernel follows that run; "Remove cells of
last run" removes that run's cells only; a failing model says why; "Generate report
notebook" writes into a new notebook.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, DF_SOURCE, Lab
from .lab_page import LabPage

pytestmark = pytest.mark.browser

MEANS_CODE = "print(df.groupby('g')['v'].mean())"
PLOT_CODE = "ax = df.groupby('g')['v'].mean().plot.bar(title='mean of v by g')"
REPORT_TITLE = "Mean of v by group"
# Raw HTML in the model's Markdown that would run script if it were not sanitized.
UNSAFE_HTML = '<img src="x" onerror="window.deepanalyzeInjected = true">'


def _expect_sanitized(page: Any) -> None:
    """The model's HTML rendered as Markdown ran no script."""
    assert page.evaluate("window.deepanalyzeInjected") is None


def _turn(analyze: str, code: str) -> str:
    return f"<Analyze>\n{analyze}\n</Analyze>\n<Code>\n```python\n{code}\n```\n</Code>"


def _answer(body: str) -> str:
    return f"<Answer>\n{body}\n</Answer>"


def _last_feedback(request: dict[str, Any]) -> str:
    """What the agent told the model about the last execution."""
    return str(request["messages"][-1]["content"])


def _describes_df(request: dict[str, Any]) -> bool:
    """Whether the run's first message describes the kernel's ``df`` to the model."""
    prompt = str(request["messages"][-1]["content"])
    return '"name": "df"' in prompt and "v (float64)" in prompt


def _open(page: Any, lab: Lab, notebook: Path) -> LabPage:
    return LabPage(page, lab, workspace=notebook.stem.replace("_", "-"), notebook=notebook.name).open()


def test_question_in_sidebar_writes_analysis_outputs_and_report_into_the_notebook(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    llm = script(
        [
            _turn("I will compare the mean of v across the groups g of df.", MEANS_CODE),
            _turn("A bar chart shows the difference.", PLOT_CODE),
            # The report quotes what the code printed, as the model read it.
            lambda body: _answer(f"# {REPORT_TITLE}\n\nThe first block printed:\n\n```\n"
                                 f"{_last_feedback(llm.requests[1]).strip()}\n```\n\n{UNSAFE_HTML}"),
        ]
    )
    lab_page = _open(page, lab, notebook)
    lab_page.run_first_cell()
    panel = lab_page.open_sidebar()
    # The sidebar lists the kernel's dataframes.
    expect(panel.get_by_role("button", name="Analyze df", exact=True)).to_be_visible()

    lab_page.ask("What is the mean of v for each group in df?")
    lab_page.expect_status("completed")
    # The question names df, which the sidebar lists: the model was told what df is.
    assert _describes_df(llm.requests[0]), llm.requests[0]

    cells = lab_page.notebook_json()["cells"]
    # The user's cell is first and untouched; the run's cells follow it.
    assert cells[0]["source"] == DF_SOURCE and "deepanalyze" not in cells[0]["metadata"]
    agent = lab_page.agent_cells()
    roles = [c["metadata"]["deepanalyze"]["role"] for c in agent]
    assert roles == ["title", "analyze", "code", "analyze", "code", "report"], roles
    run_id = agent[0]["metadata"]["deepanalyze"]["run_id"]
    assert {c["metadata"]["deepanalyze"]["run_id"] for c in agent} == {run_id}

    means, plot = agent[2], agent[4]
    assert means["source"] == MEANS_CODE and means["execution_count"] == 2
    printed = "".join(o.get("text", "") for o in means["outputs"])
    assert "a     2.0" in printed and "b    20.0" in printed, printed
    assert plot["source"] == PLOT_CODE and plot["execution_count"] == 3
    assert any("image/png" in o.get("data", {}) for o in plot["outputs"]), plot["outputs"]
    assert agent[5]["cell_type"] == "markdown" and REPORT_TITLE in agent[5]["source"]
    assert "b    20.0" in agent[5]["source"]

    # Each agent cell is the cell its `cell` event named.
    events = lab.api("GET", f"/deepanalyze/runs/{run_id}")["events"]
    assert [c["id"] for c in agent] == [e["cell_id"] for e in events if e["type"] == "cell"]

    # What the user sees: the outputs rendered in the notebook, the steps in the sidebar.
    notebook_view = page.locator(".jp-NotebookPanel:visible .jp-Notebook")
    expect(notebook_view.locator(".jp-OutputArea-output", has_text="20.0")).to_be_visible()
    expect(notebook_view.locator(".jp-OutputArea-output img")).to_be_visible()
    expect(notebook_view.get_by_role("heading", name=REPORT_TITLE)).to_be_visible()
    steps = panel.locator(".jp-DeepAnalyze-step")
    expect(steps.and_(page.locator("[data-kind='Code']"))).to_have_count(2)
    expect(panel.locator(".jp-DeepAnalyze-code", has_text=MEANS_CODE).locator("span[class]").first).to_be_visible()
    # The report reads as Markdown: a heading and a code block, not `#` and fences.
    report = steps.and_(page.locator("[data-kind='Answer']"))
    expect(report.get_by_role("heading", name=REPORT_TITLE, level=1)).to_be_visible()
    expect(report.locator("pre", has_text="b    20.0")).to_be_visible()
    expect(report).not_to_contain_text("# ")
    expect(report).not_to_contain_text("```")
    expect(report.locator("img[onerror]")).to_have_count(0)
    _expect_sanitized(page)
    page.screenshot(path=str(ARTIFACTS / "analysis-in-notebook.png"), full_page=True)

    # Saved, the notebook file holds the same cells.
    lab_page.save()
    on_disk = nbformat.read(notebook, as_version=4)
    assert [c.id for c in on_disk.cells if "deepanalyze" in c.metadata] == [c["id"] for c in agent]


LONG_CODE = "import time\nfor _ in range(1200):\n    time.sleep(0.1)\nprint('finished')"


def test_stop_ends_a_long_run_in_the_kernel_and_in_the_model_stream(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    model_asked = threading.Event()
    model_may_answer = threading.Event()

    def slow_turn(body: dict[str, Any]) -> str:
        model_asked.set()
        model_may_answer.wait(120)  # a model still thinking when the user presses Stop
        return _answer("# Too late")

    llm = script([_turn("This takes two minutes.", LONG_CODE), _answer("# Never asked")])
    lab_page = _open(page, lab, notebook)
    lab_page.run_first_cell()
    lab_page.open_sidebar()

    # 1. Stop while the kernel runs the model's code: the kernel is interrupted.
    lab_page.ask("Run something long on df.")
    expect(lab_page.panel.locator(".jp-DeepAnalyze-step[data-kind='Code']")).to_be_visible()
    lab_page.wait_for_kernel("busy")  # the model's code runs in the notebook's kernel
    lab_page.button("Stop").click()
    lab_page.expect_status("cancelled", timeout=15_000)
    expect(lab_page.panel.locator(".jp-DeepAnalyze-execution[data-status='interrupted']")).to_be_visible()
    # The status step's `**Run cancelled.**` reads bold, without its asterisks.
    status_step = lab_page.panel.locator(".jp-DeepAnalyze-step[data-kind='Status']")
    expect(status_step.locator("strong")).to_have_text("Run cancelled.")
    expect(status_step).not_to_contain_text("**")
    code = next(c for c in lab_page.agent_cells() if c["metadata"]["deepanalyze"]["role"] == "code")
    assert code["source"] == LONG_CODE
    assert not any("finished" in o.get("text", "") for o in code["outputs"])
    assert lab_page.agent_cells()[-1]["metadata"]["deepanalyze"]["role"] == "status"
    assert len(llm.requests) == 1  # the model was not asked to go on
    expect(lab_page.button("Stop")).to_be_disabled()

    # The kernel survived with the user's variables: the sidebar still lists df.
    lab_page.button("Refresh dataframes").click()
    expect(lab_page.button("Analyze df")).to_be_enabled()

    # 2. Stop while the model is still writing its turn: the stream is dropped.
    script([slow_turn])
    try:
        lab_page.ask("And now?")
        lab_page.expect_status("running")
        assert model_asked.wait(60), "the model was not asked"
        lab_page.button("Stop").click()
        lab_page.expect_status("cancelled", timeout=15_000)
    finally:
        model_may_answer.set()
    expect(lab_page.button("Send")).to_be_disabled()  # an empty box sends nothing
    expect(lab_page.panel.get_by_role("textbox", name="Ask DeepAnalyze", exact=True)).to_be_editable()


def test_approval_runs_the_users_edit_and_skips_what_the_user_skips(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    llm = script(
        [
            _turn("Look at the shape of df.", "print(df.shape)"),
            _turn("Something the user will not want.", "df.to_csv('exported.csv')"),
            _answer("# Done"),
        ]
    )
    lab_page = _open(page, lab, notebook)
    lab_page.run_first_cell()
    panel = lab_page.open_sidebar()
    panel.get_by_role("checkbox", name="Ask before running code", exact=True).check()

    lab_page.ask("What shape is df?")
    lab_page.expect_status("waiting_approval")
    expect(lab_page.button("Run")).to_be_visible()
    # The cell is in the notebook, not run yet; the user edits it there, then presses Run.
    cell = lab_page.cell(lab_page.agent_cells()[-1]["id"])
    expect(cell).to_contain_text("print(df.shape)")
    lab_page.cells.first.click()  # the user looks elsewhere; Show cell brings them back
    lab_page.button("Show cell").click()
    expect(cell).to_have_class(re.compile(r"\bjp-mod-active\b"))
    cell.locator(".jp-InputArea-editor .cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Backspace")
    page.keyboard.type(", len(df))")
    expect(cell.locator(".jp-InputArea-editor")).to_contain_text("print(df.shape, len(df))")
    lab_page.button("Run").click()

    # The edited code ran; the model was told what ran.
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text("(4, 2) 4")
    # The second turn's cells (title, analyze, code; then analyze, code) mean the model was
    # asked again; the status alone was "waiting_approval" before Run already.
    lab_page.wait_for_agent_cells(5)
    lab_page.expect_status("waiting_approval")
    assert "(4, 2) 4" in _last_feedback(llm.requests[1])

    lab_page.button("Skip").click()
    lab_page.expect_status("completed")
    skipped = lab_page.cell(lab_page.agent_cells()[-2]["id"])
    expect(skipped).to_contain_text("df.to_csv('exported.csv')")
    expect(skipped.locator(".jp-OutputArea-output")).to_have_count(0)
    expect(panel.locator(".jp-DeepAnalyze-execution[data-status='skipped']")).to_be_visible()
    assert not (notebook.parent / "exported.csv").exists()
    assert "skip" in _last_feedback(llm.requests[2]).lower()
    codes = [c for c in lab_page.agent_cells() if c["cell_type"] == "code"]
    assert [c["source"] for c in codes] == ["print(df.shape, len(df))", "df.to_csv('exported.csv')"]
    assert codes[1]["outputs"] == [] and codes[1]["execution_count"] is None


def test_reloaded_page_resumes_the_run_and_its_approvals(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    script(
        [
            _turn("First look.", "print(df['v'].sum())"),
            _turn("Second look.", "print(df['v'].max())"),
            _answer("# Resumed"),
        ]
    )
    lab_page = _open(page, lab, notebook)
    lab_page.run_first_cell()
    panel = lab_page.open_sidebar()
    panel.get_by_role("checkbox", name="Ask before running code", exact=True).check()
    lab_page.ask("Sum and max of v?")
    lab_page.expect_status("waiting_approval")
    run_id = lab_page.agent_cells()[0]["metadata"]["deepanalyze"]["run_id"]

    # A reload: the page finds its run again from what it remembered.
    page.reload()
    lab_page.wait_for_notebook()
    lab_page.open_sidebar()
    lab_page.expect_status("waiting_approval")
    lab_page.button("Run").click()
    expect(lab_page.cells.locator(".jp-OutputArea-output", has_text="44.0")).to_be_visible()
    lab_page.expect_status("waiting_approval")

    # Another browser (nothing remembered): the page finds the run of its notebook's kernel.
    page.evaluate("() => window.localStorage.clear()")
    page.reload()
    lab_page.wait_for_notebook()
    lab_page.open_sidebar()
    lab_page.expect_status("waiting_approval")
    lab_page.button("Run").click()
    lab_page.expect_status("completed")

    events = lab.api("GET", f"/deepanalyze/runs/{run_id}")["events"]
    created = [e["cell_id"] for e in events if e["type"] == "cell"]
    cells = lab_page.agent_cells(run_id)
    assert sorted(c["id"] for c in cells) == sorted(created)  # each cell once
    outputs = {
        c["source"]: "".join(o.get("text", "") for o in c["outputs"]) for c in cells if c["cell_type"] == "code"
    }
    assert outputs == {"print(df['v'].sum())": "44.0\n", "print(df['v'].max())": "30.0\n"}


def test_remove_cells_of_last_run_leaves_the_users_cells_and_earlier_runs(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    llm = script([_answer("# First run"), _answer("# Second run")])
    lab_page = _open(page, lab, notebook)
    lab_page.run_first_cell()
    lab_page.open_sidebar()

    # The first run starts from the dataframe list: the model is told about df.
    lab_page.button("Analyze df").click()
    lab_page.expect_status("completed")
    assert _describes_df(llm.requests[0])
    lab_page.ask("Anything else?")
    lab_page.expect_status("completed")
    # The follow-up (asked with the cursor where it was) reads below the first run.
    run_order = [c["metadata"]["deepanalyze"]["run_id"] for c in lab_page.agent_cells()]
    first, second = dict.fromkeys(run_order)
    assert run_order == [first] * run_order.count(first) + [second] * run_order.count(second)
    assert "First run" in lab_page.agent_cells(first)[-1]["source"]
    user_cells = [c for c in lab_page.notebook_json()["cells"] if "deepanalyze" not in c["metadata"]]

    lab_page.run_command("DeepAnalyze: Remove cells of last run")
    lab_page.wait_for_agent_cells(0, run_id=second)
    assert {c["metadata"]["deepanalyze"]["run_id"] for c in lab_page.agent_cells()} == {first}

    lab_page.run_command("DeepAnalyze: Remove cells of last run")
    lab_page.wait_for_agent_cells(0)
    remaining = lab_page.notebook_json()["cells"]
    assert remaining == user_cells
    assert remaining[0]["source"] == DF_SOURCE and remaining[0]["outputs"]


def test_a_failing_model_shows_its_error_and_frees_the_sidebar(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    script([])  # the scripted model answers 400: it has no turn to give
    lab_page = _open(page, lab, notebook)
    lab_page.run_first_cell()
    lab_page.open_sidebar()
    lab_page.ask("What is in df?")
    lab_page.expect_status("failed")
    expect(lab_page.panel.get_by_role("alert")).to_contain_text("no more turns")
    # Said once, by the alert; the failed run's status step would repeat it.
    expect(lab_page.panel.get_by_text("no more turns")).to_have_count(1)
    # It failed before the model's first word: the notebook gets no cell, the alert says why.
    assert lab_page.agent_cells() == []
    expect(lab_page.button("Stop")).to_be_disabled()
    expect(lab_page.button("Analyze df")).to_be_enabled()


def test_asking_while_another_tab_runs_on_the_kernel_follows_that_run(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    script([_turn("Started elsewhere.", "print(len(df))"), _answer("# From the other tab")])
    lab_page = _open(page, lab, notebook)
    lab_page.run_first_cell()
    lab_page.open_sidebar()
    # Another tab (here: a script with the token) starts a run on this notebook's kernel.
    started = lab.api(
        "POST",
        "/deepanalyze/runs",
        {"question": "How many rows?", "notebook_path": notebook.name, "approval": "manual"},
    )

    box = lab_page.panel.get_by_role("textbox", name="Ask DeepAnalyze", exact=True)
    box.fill("My own question")
    box.press("Enter")
    expect(lab_page.panel.get_by_role("alert")).to_contain_text("already running a DeepAnalyze run")
    expect(box).to_have_value("My own question")  # nothing typed is lost
    lab_page.expect_status("waiting_approval")
    expect(lab_page.panel.locator(".jp-DeepAnalyze-question")).to_have_text("How many rows?")
    lab_page.button("Run").click()
    lab_page.expect_status("completed")
    cells = lab_page.agent_cells(started["run_id"])
    assert [c["metadata"]["deepanalyze"]["role"] for c in cells] == ["title", "analyze", "code", "report"]
    assert cells[2]["outputs"][0]["text"] == "4\n"


def test_generate_report_command_writes_a_new_report_notebook(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    script([_turn("Count to three.", "print(sum([1, 2, 3]))"), _answer("# Six")])
    lab_page = _open(page, lab, notebook)
    lab_page.open_sidebar()
    lab_page.run_command("DeepAnalyze: Generate report notebook")
    dialog = page.locator(".jp-Dialog")
    dialog.locator("input").fill("What is 1 + 2 + 3?")
    dialog.get_by_role("button", name="Ok").click()
    lab_page.expect_status("completed")

    reports = sorted(lab.root.glob("deepanalyze-report-*.ipynb"))
    assert len(reports) == 1
    report = LabPage(page, lab, lab_page.workspace, reports[0].name)
    cells = report.agent_cells()
    assert [c["metadata"]["deepanalyze"]["role"] for c in cells] == ["title", "analyze", "code", "report"]
    assert cells[2]["outputs"][0]["text"] == "6\n"
    assert lab_page.agent_cells() == []  # the notebook that was active is left alone


def test_analyze_magic_output_inserts_its_run_as_cells(page: Any, lab: Lab, notebook: Path, script: Any) -> None:
    report_md = f"# {REPORT_TITLE}\n\n**Group b** is higher.\n\n{UNSAFE_HTML}"
    llm = script([_turn("Means by group.", MEANS_CODE), _answer(report_md)])
    nb = nbformat.read(notebook, as_version=4)
    magic = f'%load_ext jupyter_deepanalyze\nr = %analyze df "Mean of v by g?" --model {llm.url}'
    nb.cells.append(nbformat.v4.new_code_cell(magic))
    nbformat.write(nb, notebook)
    lab_page = _open(page, lab, notebook)
    lab_page.run_first_cell()
    page.keyboard.press("Shift+Enter")  # the magic's cell is active after the first

    output = page.locator(".jp-DeepAnalyzeRun")
    expect(output).to_contain_text("Completed")
    # The report reads as Markdown, sanitized; the code cell is shown as code.
    report = output.locator(".jp-DeepAnalyzeRun-cell[data-role='report']")
    expect(report.get_by_role("heading", name=REPORT_TITLE, level=1)).to_be_visible()
    expect(report.locator("strong")).to_have_text("Group b")
    expect(report).not_to_contain_text("# ")
    expect(report.locator("img[onerror]")).to_have_count(0)
    _expect_sanitized(page)
    code = output.locator(".jp-DeepAnalyzeRun-code")
    expect(code).to_have_text(re.compile(rf"^\[.*\]: {re.escape(MEANS_CODE)}$"))
    expect(code.locator("span[class]").first).to_be_visible()  # highlighted
    page.screenshot(path=str(ARTIFACTS / "analyze-magic-output.png"), full_page=True)
    insert = output.get_by_role("button", name="Insert as cells", exact=True)
    notice = output.get_by_role("status")
    insert.click()
    expect(notice).to_have_text("4 cells inserted")
    lab_page.wait_for_agent_cells(4)
    cells = lab_page.notebook_json()["cells"]
    assert cells[1]["source"] == magic
    inserted = cells[2:6]
    assert [c["metadata"]["deepanalyze"]["role"] for c in inserted] == ["title", "analyze", "code", "report"]
    assert "b    20.0" in "".join(o.get("text", "") for o in inserted[2]["outputs"])
    # Pressed again, the button adopts the cells it inserted instead of doubling them.
    insert.click()
    expect(notice).to_have_text("Its 4 cells are in the notebook already")
    assert [c["id"] for c in lab_page.agent_cells()] == [c["id"] for c in inserted]
