"""A conversation in the sidebar, end to end: real Chromium, real JupyterLab and server extension.

A user asks, then asks a follow-up that builds on the first answer's variables: it
continues the conversation (the model is sent the first run's messages) and its cells
go below the first run's, wherever the cursor is. The thread reads as questions and
answers (earlier steps folded), lists the files each run wrote (Open, Download), exports
the conversation beside the notebook, is rebuilt from the server after a reload, and
"New conversation" starts over.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from .conftest import Lab
from .lab_page import LabPage

pytestmark = pytest.mark.browser

FIRST_QUESTION = "What are the means of v by g?"
FIRST_ANSWER = "<Answer>\n# First answer\n\nThe means are 2 and 20.\n</Answer>"
FOLLOW_UP = "And twice those means?"
MEANS = "means = df.groupby('g')['v'].mean()\nmeans.to_csv('means.csv')\nprint(means.to_dict())"
TWICE = "print((means * 2).to_dict())"


def _turn(analyze: str, code: str) -> str:
    return f"<Analyze>\n{analyze}\n</Analyze>\n<Code>\n```python\n{code}\n```\n</Code>"


def _answer(body: str) -> str:
    return f"<Answer>\n{body}\n</Answer>"


def test_a_follow_up_continues_the_conversation_below_the_run_it_follows(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    llm = script(
        [
            _turn("Group means, kept in a file.", MEANS),
            FIRST_ANSWER,
            _turn("Reuse `means` from before.", TWICE),
            _answer("# Second answer\n\nTwice: 4 and 40."),
            _answer("# A new start"),
        ]
    )
    lab_page = LabPage(page, lab, workspace="conversation", notebook=notebook.name).open()
    lab_page.run_first_cell()
    panel = lab_page.open_sidebar()

    lab_page.ask(FIRST_QUESTION)
    lab_page.expect_status("completed")
    # The file the run's code wrote, with its actions.
    files = panel.get_by_role("region", name="Files")
    expect(files.get_by_text("means.csv")).to_be_visible()
    download = files.get_by_role("link", name="Download means.csv")
    expect(download).to_have_attribute("href", re.compile(r"/files/means\.csv\?download=1$"))
    expect(panel.get_by_text("Your next question follows up this conversation")).to_be_visible()

    # The cursor goes back to the user's own first cell; the follow-up still reads below the run.
    lab_page.cells.first.locator(".jp-InputArea-editor").click()
    lab_page.ask(FOLLOW_UP)
    lab_page.expect_status("completed")

    first_request, follow_up_request = llm.requests[1], llm.requests[2]
    history = first_request["messages"] + [{"role": "assistant", "content": FIRST_ANSWER}]
    assert follow_up_request["messages"][: len(history)] == history
    assert follow_up_request["messages"][-1]["content"].startswith(f"# Instruction\n{FOLLOW_UP}")
    agent = lab_page.agent_cells()
    order = [c["metadata"]["deepanalyze"]["run_id"] for c in agent]
    first_run, second_run = dict.fromkeys(order)
    assert order == [first_run] * order.count(first_run) + [second_run] * order.count(second_run)
    twice = [c for c in lab_page.agent_cells(second_run) if c["cell_type"] == "code"][0]
    assert twice["outputs"][0]["text"] == "{'a': 4.0, 'b': 40.0}\n"  # `means` of the first run
    listed = {r["run_id"]: r["parent_run_id"] for r in lab.api("GET", "/deepanalyze/runs")["runs"]}
    assert listed[second_run] == first_run and listed[first_run] is None

    # A thread: the earlier question and its answer, its steps folded; the latest in full.
    earlier = panel.get_by_role("region", name=f"Earlier question: {FIRST_QUESTION}")
    expect(earlier.get_by_role("heading", name="First answer")).to_be_visible()
    expect(earlier.locator(".jp-DeepAnalyze-earlierStep").first).to_be_hidden()
    earlier.get_by_text("2 steps").click()
    expect(earlier.locator(".jp-DeepAnalyze-earlierStep[data-kind='Code']")).to_be_visible()
    expect(panel.locator(".jp-DeepAnalyze-question")).to_have_text(FOLLOW_UP)
    # Open a file the first run wrote, from the thread.
    earlier.get_by_role("button", name="Open means.csv").click()
    expect(page.locator(".lm-TabBar-tab", has_text="means.csv")).to_be_visible()

    # Export the conversation as PDF beside the notebook.
    latest_export = panel.locator(".jp-DeepAnalyze-export").last
    latest_export.get_by_text("Export report…").click()
    latest_export.get_by_role("button", name="Export as PDF").click()
    exported = f"{notebook.stem}-deepanalyze-{second_run[:8]}.pdf"
    expect(latest_export.get_by_role("status")).to_contain_text(f"Exported to {exported}")
    text = " ".join(page.extract_text() for page in PdfReader(lab.root / exported).pages)
    assert "First answer" in text and "Second answer" in text

    # Reloaded, the sidebar rebuilds the thread from the server.
    lab_page.page.locator(".lm-TabBar-tab", has_text=notebook.name).click()
    lab_page.save()
    lab_page.page.reload()
    lab_page.wait_for_notebook()
    panel = lab_page.open_sidebar()
    expect(panel.get_by_role("region", name=f"Earlier question: {FIRST_QUESTION}")).to_be_visible()
    expect(panel.locator(".jp-DeepAnalyze-question")).to_have_text(FOLLOW_UP)

    # New conversation: the next question starts afresh.
    lab_page.button("New conversation").click()
    expect(panel.get_by_role("region", name=f"Earlier question: {FIRST_QUESTION}")).to_have_count(0)
    lab_page.ask("Start over: what is df?")
    lab_page.expect_status("completed")
    assert len(llm.requests[4]["messages"]) == 1  # no history sent
    third = [r for r in lab.api("GET", "/deepanalyze/runs")["runs"] if r["question"] == "Start over: what is df?"]
    assert third[0]["parent_run_id"] is None

