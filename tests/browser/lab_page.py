"""What a user does in JupyterLab, as the browser tests say it.

``LabPage`` drives one page: open a notebook, run its first cell, open the DeepAnalyze
sidebar, ask, stop, approve. User actions go through the UI (clicks, keys, the command
palette); only checks read JupyterLab's notebook model (through ``window.jupyterapp``,
which ``--LabApp.expose_app_in_browser`` exposes), because cell ids and metadata are
not in the DOM.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Locator, Page, expect

from .conftest import UI_TIMEOUT_MS, Lab

# The nbformat JSON of the notebook at `path`, as the open document's model holds it.
_NOTEBOOK_JSON = """
path => {
  for (const widget of window.jupyterapp.shell.widgets('main')) {
    if (widget.context && widget.context.path === path) {
      return widget.context.model.toJSON();
    }
  }
  return null;
}
"""

_KERNEL_STATUS_IS = """
([path, status]) => {
  for (const widget of window.jupyterapp.shell.widgets('main')) {
    if (widget.context && widget.context.path === path) {
      return widget.sessionContext.session?.kernel?.status === status;
    }
  }
  return false;
}
"""


# Whether the notebook at `path` holds `count` agent cells (of run `runId`, or of any run).
_AGENT_CELL_COUNT_IS = """
([path, runId, count]) => {
  for (const widget of window.jupyterapp.shell.widgets('main')) {
    if (widget.context && widget.context.path === path) {
      const cells = widget.context.model.toJSON().cells.filter(cell => {
        const run = cell.metadata && cell.metadata.deepanalyze;
        return run && (runId === null || run.run_id === runId);
      });
      return cells.length === count;
    }
  }
  return false;
}
"""


class LabPage:
    """One JupyterLab page with one notebook open."""

    def __init__(self, page: Page, lab: Lab, workspace: str, notebook: str) -> None:
        self.page = page
        self.lab = lab
        self.workspace = workspace
        self.notebook = notebook

    # ------------------------------------------------------------------ notebook

    def open(self) -> LabPage:
        self.page.goto(self.lab.lab_url(self.workspace, self.notebook))
        self.wait_for_notebook()
        return self

    def wait_for_notebook(self) -> None:
        self.page.wait_for_function("() => !!window.jupyterapp", timeout=UI_TIMEOUT_MS)
        # Plugins (the sidebar's settings among them) have loaded once the app is restored.
        self.page.evaluate("() => window.jupyterapp.restored.then(() => true)")
        self.cells.first.wait_for()
        self.wait_for_kernel("idle")

    def wait_for_kernel(self, status: str) -> None:
        """Until the notebook's kernel has ``status`` (``idle``, ``busy``)."""
        self.page.wait_for_function(_KERNEL_STATUS_IS, arg=[self.notebook, status], timeout=UI_TIMEOUT_MS)

    @property
    def cells(self) -> Locator:
        return self.page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")

    def cell(self, cell_id: str) -> Locator:
        """The notebook cell whose nbformat id is ``cell_id``."""
        ids = [c["id"] for c in self.notebook_json()["cells"]]
        assert cell_id in ids, f"no cell {cell_id} in {self.notebook}"
        return self.cells.nth(ids.index(cell_id))

    def run_first_cell(self) -> None:
        """Click into the first cell and Shift+Enter, as a user runs it."""
        first = self.cells.first
        first.locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Shift+Enter")
        expect(first.locator(".jp-OutputArea-output table")).to_be_visible()
        expect(first.locator(".jp-InputPrompt")).to_have_text("[1]:")

    def notebook_json(self) -> dict[str, Any]:
        content = self.page.evaluate(_NOTEBOOK_JSON, self.notebook)
        assert content is not None, f"{self.notebook} is not open"
        return content

    def agent_cells(self, run_id: str | None = None) -> list[dict[str, Any]]:
        cells = [c for c in self.notebook_json()["cells"] if "deepanalyze" in c.get("metadata", {})]
        return [c for c in cells if run_id is None or c["metadata"]["deepanalyze"]["run_id"] == run_id]

    def wait_for_agent_cells(self, count: int, run_id: str | None = None) -> None:
        """Until the notebook holds ``count`` agent cells (of ``run_id``, or of any run)."""
        self.page.wait_for_function(_AGENT_CELL_COUNT_IS, arg=[self.notebook, run_id, count], timeout=UI_TIMEOUT_MS)

    def run_command(self, label: str) -> None:
        """Runs a command from the palette by its label, as a user would."""
        self.page.keyboard.press("Control+Shift+C")
        palette = self.page.locator(".lm-CommandPalette")
        palette.locator("input").fill(label)
        palette.locator(".lm-CommandPalette-item", has_text=label).first.click()

    def save(self) -> None:
        self.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        expect(self.page.locator(".jp-NotebookPanel:visible .jp-mod-dirty")).to_have_count(0)

    # ------------------------------------------------------------------ sidebar

    @property
    def panel(self) -> Locator:
        return self.page.locator("#jp-deepanalyze-panel")

    def open_sidebar(self) -> Locator:
        """Clicks the DeepAnalyze tab of the right sidebar."""
        panel = self.page.get_by_role("region", name="DeepAnalyze", exact=True)
        if not panel.is_visible():
            self.page.locator(".jp-SideBar.jp-mod-right [data-id='jp-deepanalyze-panel']").click()
        expect(panel).to_be_visible()
        return panel

    def button(self, name: str) -> Locator:
        return self.panel.get_by_role("button", name=name, exact=True)

    def ask(self, question: str) -> None:
        box = self.panel.get_by_role("textbox", name="Ask DeepAnalyze", exact=True)
        box.fill(question)
        box.press("Enter")
        # The box empties once the server accepted the run.
        expect(box).to_have_value("")

    def expect_status(self, status: str, timeout: int = UI_TIMEOUT_MS) -> None:
        expect(self.panel.locator(f".jp-DeepAnalyze-status[data-status='{status}']")).to_be_visible(
            timeout=timeout
        )
