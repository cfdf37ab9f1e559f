"""The sidebar when the model's code ignores Stop: real Chromium, JupyterLab and server.

The code catches ``KeyboardInterrupt``; Stop ends the run, and the sidebar says the kernel
is still busy with that code and offers JupyterLab's own Restart Kernel, after which the
notebook's kernel takes a new run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Lab
from .lab_page import LabPage

pytestmark = pytest.mark.browser

STUBBORN = (
    "import time\nprint('ignoring interrupts', flush=True)\nwhile True:\n"
    "    try:\n        time.sleep(0.05)\n    except KeyboardInterrupt:\n        pass"
)


def test_stop_on_code_that_ignores_it_offers_a_kernel_restart(
    page: Any, lab: Lab, notebook: Path, script: Any
) -> None:
    script([f"<Code>\n```python\n{STUBBORN}\n```\n</Code>", "<Answer>\n# After the restart\n</Answer>"])
    lab_page = LabPage(page, lab, workspace=notebook.stem.replace("_", "-"), notebook=notebook.name).open()
    lab_page.run_first_cell()
    lab_page.open_sidebar()
    lab_page.ask("Run something that will not stop.")
    # The code's first line has printed: it runs (a busy kernel alone may be the variables probe).
    expect(page.locator(".jp-OutputArea-output").filter(has_text="ignoring interrupts")).to_be_visible()
    lab_page.button("Stop").click()
    lab_page.expect_status("cancelled", timeout=15_000)

    panel = lab_page.panel
    expect(panel.locator(".jp-DeepAnalyze-execution[data-status='unresponsive']")).to_contain_text(
        "still running: the code ignores interrupts"
    )
    expect(panel.get_by_role("alert").filter(has_text="The kernel did not stop")).to_contain_text(
        "Restart the kernel (Kernel > Restart Kernel…) to use it again"
    )

    stale = panel.locator(".jp-DeepAnalyze-error").filter(has_text="Cannot list dataframes")
    expect(stale).to_contain_text("still busy with code that ignored the interrupt")

    # JupyterLab's own Restart Kernel, with its confirmation, on the run's notebook.
    lab_page.button("Restart kernel").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Restart Kernel")
    dialog.get_by_role("button", name="Confirm Kernel Restart").click()
    lab_page.wait_for_kernel("idle")
    expect(stale).to_have_count(0)  # the dataframes are listed again once the kernel is back

    lab_page.ask("And now?")
    lab_page.expect_status("completed", timeout=30_000)
    assert lab_page.agent_cells()[-1]["source"] == "# After the restart"
