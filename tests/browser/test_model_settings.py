"""A model from JupyterLab, end to end: a server with no model configured, as a new user
finds it. The picker names the unavailable default and says where to set a model; a
question then fails before the model's first word and inserts no cell; "Model settings"
adds the scripted model's URL with a key, tests it, saves it, and the next question runs
on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Lab
from .lab_page import LabPage

pytestmark = pytest.mark.browser

KEY = "sk-browser-test-key"


@pytest.fixture(scope="module")
def lab_args() -> list[str]:
    # No model configured: the default is `auto`, and nothing answers at localhost:8000.
    return ["--DeepAnalyze.model=auto"]


def _open(page: Any, lab: Lab, notebook: Path) -> LabPage:
    return LabPage(page, lab, workspace=notebook.stem.replace("_", "-"), notebook=notebook.name).open()


def test_no_model_says_where_to_set_one_inserts_no_cells_and_model_settings_adds_one(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    llm = script(["<Answer>\n# Done on my own model\n</Answer>"])
    lab_page = _open(page, lab, notebook)
    lab_page.run_first_cell()
    panel = lab_page.open_sidebar()

    # The picker names the spec and says why it cannot be used, in JupyterLab's terms.
    picker = panel.get_by_role("combobox", name="Model", exact=True)
    expect(picker.locator("option")).to_have_text(["auto (unavailable)"])
    expect(panel.locator(".jp-DeepAnalyze-modelProblem")).to_contain_text(
        "auto is unavailable: No model is configured: add one in the DeepAnalyze sidebar's Model settings"
    )

    # A question fails before the model's first word: no cell in the notebook, the alert says why.
    lab_page.ask("What is in df?")
    lab_page.expect_status("failed")
    expect(panel.get_by_role("alert")).to_contain_text("Model settings")
    assert lab_page.agent_cells() == []

    # Model settings: the URL and a key, tested through the server, then saved.
    lab_page.button("Model settings").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Model settings")
    dialog.get_by_role("textbox", name="Model server URL").fill(llm.url)
    dialog.get_by_label("API key").fill(KEY)
    dialog.get_by_role("button", name="Test", exact=True).click()
    expect(dialog.get_by_role("status")).to_have_text("It answers and serves: DeepAnalyze-8B")
    assert llm.requests == []  # tested with GET /models only
    dialog.get_by_role("button", name="Save", exact=True).click()
    expect(dialog).to_have_count(0)

    # The picker now offers it, picked; the key stays on the server.
    expect(picker).to_have_value(llm.url)
    expect(picker.locator("option:checked")).to_have_text("DeepAnalyze-8B")
    saved = lab.api("GET", "/deepanalyze/user-model")
    assert saved == {"model": {"url": llm.url, "model_name": "", "has_api_key": True}}
    assert KEY not in page.content()

    lab_page.ask("What is in df?")
    lab_page.expect_status("completed")
    cells = lab_page.agent_cells()
    assert [c["metadata"]["deepanalyze"]["role"] for c in cells] == ["title", "report"]
    assert len(llm.requests) == 1

    # Reopened, the dialog says a key is kept without showing it.
    lab_page.button("Model settings").click()
    key_box = page.locator(".jp-Dialog").get_by_label("API key")
    expect(key_box).to_have_value("")
    expect(key_box).to_have_attribute("placeholder", "kept on the server: type a new one to replace it")
    page.locator(".jp-Dialog").get_by_role("button", name="Cancel", exact=True).click()


def test_the_launcher_has_a_deepanalyze_report_card(page: Any, lab: Lab) -> None:
    page.goto(f"{lab.url}/lab/workspaces/launcher-card?token={lab.token}")
    page.wait_for_function("() => window.jupyterapp?.commands.hasCommand('launcher:create')")
    page.evaluate("() => window.jupyterapp.commands.execute('launcher:create')")
    card = page.locator(".jp-LauncherCard", has_text="DeepAnalyze report")
    expect(card).to_be_visible()
    expect(card.locator("img[src^='data:image/svg+xml']")).to_have_count(1)  # the DeepAnalyze icon
