"""A real JupyterLab with the extension, a scripted model, and Chromium driven by Playwright.

One ``jupyter lab`` process per test module (started as a user would, with the README's
flags plus test isolation: its own config, data, settings and workspaces folders, a
random token, a free port), one scripted OpenAI-compatible model server that each test
loads with its own turns, one headless Chromium (Debian's ``/usr/bin/chromium``; set
``DEEPANALYZE_CHROMIUM`` to use another), and a fresh browser context per test.

Every test leaves a screenshot under ``test-artifacts/browser/`` (named after the test,
``-FAILED`` when it failed) and the module leaves JupyterLab's log there.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from ..scripted_llm import ScriptedLLM, Turn

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("DEEPANALYZE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
LAB_START_SECONDS = 120
# Generous for a 2-core CI machine shared with other jobs; waits end as soon as they can.
UI_TIMEOUT_MS = 60_000

# The user's first cell in every test notebook: the dataframe the questions are about.
DF_SOURCE = (
    "import pandas as pd\n"
    "df = pd.DataFrame({'g': ['a', 'a', 'b', 'b'], 'v': [1.0, 3.0, 10.0, 30.0]})\n"
    "df"
)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _tee_until(
    process: subprocess.Popen[str], log: Any, signal_line: str
) -> tuple[threading.Event, threading.Thread]:
    """Copies the server's output to ``log`` in a thread; the event is set once a line
    contains ``signal_line``, or when the output ends (the server exited)."""
    running = threading.Event()

    def copy() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            log.flush()
            if signal_line in line:
                running.set()
        running.set()

    copier = threading.Thread(target=copy, name="jupyter-lab-log", daemon=True)
    copier.start()
    return running, copier


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Lab:
    """A running ``jupyter lab`` and what the tests need to reach it."""

    url: str
    token: str
    root: Path
    settings_dir: Path
    log_path: Path

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Calls the server's REST API with the token (as a script would, not the page)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def lab_url(self, workspace: str, notebook: str) -> str:
        return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?token={self.token}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    """The model every run of the module talks to; each test gives it its turns (``script``)."""
    with ScriptedLLM([], chunk_size=12, chunk_delay=0.005) as server:
        yield server


@pytest.fixture
def script(llm: ScriptedLLM) -> Iterator[Any]:
    """``script(turns)`` replaces the model's remaining turns and forgets earlier requests."""

    def load(turns: list[Turn]) -> ScriptedLLM:
        llm.replace_turns(turns)
        return llm

    yield load
    load([])


@pytest.fixture(scope="module")
def lab_args() -> list[str]:
    """Extra ``jupyter lab`` arguments of a test module (each replaces a default of the same option)."""
    return []


@pytest.fixture(scope="module")
def lab(llm: ScriptedLLM, lab_args: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """``jupyter lab`` with the extension, pointed at the scripted model."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    settings = base / "user-settings"
    for folder in (root, settings, base / "workspaces", base / "config", base / "data", base / "runtime"):
        folder.mkdir(parents=True, exist_ok=True)
    # JupyterLab asks whether to fetch its news in a toast that can cover the sidebar's
    # buttons; answer it "never" up front, as a user would once.
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = base / "jupyter-lab.log"
    token = secrets.token_hex(16)
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "DEEPANALYZE_MODEL": "",
    }
    env.pop("DEEPANALYZE_API_KEY", None)
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--allow-root",  # tests and CI run as root
        "--no-browser",
        f"--port={port}",
        "--port-retries=0",
        "--ip=127.0.0.1",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        # Lets the tests read the notebook model (cell ids, metadata) and run commands.
        "--LabApp.expose_app_in_browser=True",
        # Debug lines include "<extension> | extension was successfully started", which the
        # server logs once its event loop runs, with its port bound: the fixture waits for it.
        "--ServerApp.log_level=DEBUG",
        f"--DeepAnalyze.model={llm.url}",
        "--DeepAnalyze.execution_timeout=120",
    ]
    overridden = {arg.split("=", 1)[0] for arg in lab_args}
    command = [arg for arg in command if arg.split("=", 1)[0] not in overridden] + lab_args
    log = log_path.open("w")
    process = subprocess.Popen(
        command, cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, settings_dir=settings, log_path=log_path)
    running, copier = _tee_until(process, log, "jupyter_deepanalyze | extension was successfully started")
    try:
        if not running.wait(LAB_START_SECONDS):
            pytest.fail(f"jupyter lab did not start in {LAB_START_SECONDS} s:\n{server.log()[-4000:]}")
        if process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {process.wait()}:\n{server.log()[-4000:]}")
        server.api("GET", "/api/status")
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        copier.join(30)  # the rest of its output, up to the end of the pipe
        log.close()
        shutil.copyfile(log_path, ARTIFACTS / "jupyter-lab.log")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian (Playwright's own download is not used)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: `apt-get install chromium` "
            "(or set DEEPANALYZE_CHROMIUM to a Chromium binary)."
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)

    with sync_playwright() as playwright:
        # launch() gives the browser a fresh temporary --user-data-dir of its own.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::")[-1])


@pytest.fixture
def notebook(lab: Lab, request: pytest.FixtureRequest) -> Path:
    """A notebook of this test whose first cell defines ``df`` (not run yet)."""
    name = _artifact_name(request.node.nodeid)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(DF_SOURCE))
    path = lab.root / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def page(browser: Any, lab: Lab, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page in a fresh browser context (its own localStorage); screenshot at the end."""
    # Every test starts from the extension's default settings (the sidebar's "Ask before
    # running code" is one, saved when ticked).
    shutil.rmtree(lab.settings_dir / "jupyter-deepanalyze", ignore_errors=True)
    context = browser.new_context(viewport={"width": 1440, "height": 1400})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    # Leaving a notebook with unsaved cells asks "leave the page?": the tests say yes.
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    name = _artifact_name(request.node.nodeid)
    report = getattr(request.node, "report_call", None)
    failed = report is None or report.failed
    suffix = "-FAILED" if failed else ""
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"), full_page=True)
    except Exception as exc:  # a crashed page still lets the other artifacts be written
        console.append(f"screenshot failed: {exc}")
    if failed:
        (ARTIFACTS / f"{name}-console.log").write_text("\n".join(console))
    context.close()
    _shut_down_sessions(lab)


def _shut_down_sessions(lab: Lab) -> None:
    """Each test's notebook kernel ends with the test (they share 2 CPUs)."""
    for session in lab.api("GET", "/api/sessions"):
        try:
            lab.api("DELETE", f"/api/sessions/{session['id']}")
        except urllib.error.HTTPError:
            pass
