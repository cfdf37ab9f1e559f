"""Secrets stay out of kernels, events, logs, notebooks and the model's next request, and a
key goes only to the model server it was configured for — in the server, the CLI and the magic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from traitlets.config import Config

from ..scripted_llm import ScriptedLLM
from .checks import RunChecks, of_type

KEY = "sk-default-model-key-0123456789"
OTHER_KEY = "sk-other-model-key-9876543210"
JUPYTER = str(Path(sys.executable).parent / "jupyter")
# The model's code looks for the key in its environment, then prints it (as code that found
# it in a file the account can read would): the environment has none, and no output keeps it.
LEAK = (
    "<Code>\n```python\nimport os\nprint(os.environ.get('DEEPANALYZE_API_KEY'))\n"
    f"print('the key is {KEY}')\n```\n</Code>"
)
ANSWER = "<Answer>\nNo key here.\n</Answer>"


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    """The default model: it refuses requests without its key."""
    with ScriptedLLM([], api_key=KEY) as server:
        yield server


@pytest.fixture
def other_models() -> Iterator[tuple[ScriptedLLM, ScriptedLLM]]:
    """Two more allowed models: one with a key of its own, one without any."""
    with ScriptedLLM([], api_key=OTHER_KEY) as keyed, ScriptedLLM([]) as keyless:
        yield keyed, keyless


@pytest.fixture
def jp_server_config(
    jp_server_config: Config, other_models: tuple[ScriptedLLM, ScriptedLLM], monkeypatch: pytest.MonkeyPatch
) -> Config:
    keyed, keyless = other_models
    monkeypatch.setenv("DEEPANALYZE_API_KEY", KEY)  # as JupyterHub's Spawner.environment sets it
    jp_server_config.DeepAnalyze.allowed_models = [keyed.url, keyless.url]
    jp_server_config.DeepAnalyze.api_keys = {keyed.url: OTHER_KEY}
    return jp_server_config


async def test_the_key_is_in_no_kernel_and_in_no_event_log_or_request(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    # The extension took the key out of the server's environment when it loaded: the
    # notebook's kernel, started afterwards, never had it.
    assert "DEEPANALYZE_API_KEY" not in os.environ
    assert await notebook.run("import os; print('DEEPANALYZE_API_KEY' in os.environ)") == "False\n"

    llm.turns.extend([LEAK, ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path)
    events = await checks.finished(run_id, "completed")
    [finished] = of_type(events, "execution_finished")
    assert finished["feedback"] == "None\nthe key is ***\n"
    assert KEY not in json.dumps(events)
    assert KEY.encode() not in (checks.runs_dir / f"{run_id}.jsonl").read_bytes()
    assert KEY not in json.dumps(llm.requests[1])  # the model is not told it either
    assert llm.authorizations[-1] == f"Bearer {KEY}"  # while the model server still gets it


async def test_each_model_server_gets_only_its_own_key(
    api: Any, llm: ScriptedLLM, other_models: tuple[ScriptedLLM, ScriptedLLM]
) -> None:
    keyed, keyless = other_models
    listed = await api.call("GET", "models")
    assert [(m["spec"], m["available"]) for m in listed.body["models"]] == [
        (llm.url, True), (keyed.url, True), (keyless.url, True)
    ]
    assert set(llm.authorizations) == {f"Bearer {KEY}"}
    assert set(keyed.authorizations) == {f"Bearer {OTHER_KEY}"}
    assert set(keyless.authorizations) == {None}  # the default model's key goes nowhere else
    assert KEY not in json.dumps(listed.body) and OTHER_KEY not in json.dumps(listed.body)


def test_the_cli_gives_its_kernel_no_key_and_writes_none(scripted_llm: Any, tmp_path: Path) -> None:
    llm = scripted_llm([LEAK, ANSWER], api_key=KEY)
    out = tmp_path / "r.ipynb"
    done = subprocess.run(
        [JUPYTER, "deepanalyze", "report", "-q", "Q", "-o", str(out), "--model", llm.url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DEEPANALYZE_API_KEY": KEY},
    )
    assert done.returncode == 0, done.stderr
    [code] = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    assert code.outputs[0]["text"] == "None\nthe key is ***\n"
    assert KEY not in out.read_text() and KEY not in done.stderr + done.stdout
    assert KEY not in json.dumps(llm.requests)


def test_the_magic_takes_the_key_out_of_its_own_environment(scripted_llm: Any, tmp_path: Path) -> None:
    llm = scripted_llm([LEAK, ANSWER], api_key=KEY)
    script = tmp_path / "script.ipy"
    script.write_text(
        f'%load_ext jupyter_deepanalyze\nr = %analyze "Q" --model {llm.url}\n'
        "import json\nprint('STATUS', r.status, 'LEAKED' if r.run_id and "
        f"{KEY!r} in json.dumps(r.events) else 'CLEAN')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "DEEPANALYZE_API_KEY": KEY, "MPLBACKEND": "agg"},
    )
    assert done.returncode == 0, done.stderr
    assert "STATUS completed CLEAN" in done.stdout
    assert "None\n" in done.stdout and "the key is ***" in done.stdout
    assert KEY not in done.stdout + done.stderr
