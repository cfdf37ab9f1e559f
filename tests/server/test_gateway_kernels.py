"""A Jupyter server started with a gateway URL: runs and the variables probe in the notebook's
remote kernel (a real Jupyter Kernel Gateway), driven only through the HTTP/WS API."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import nbformat
import pytest
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.gateway.managers import GatewayMappingKernelManager
from traitlets.config import Config

from ..conftest import RunningGateway
from ..scripted_llm import ScriptedLLM
from .conftest import DeepAnalyzeAPI
from .test_runs import ANSWER, LOOP, of_type

PRINT_DF = "<Code>\n```python\nprint(df.shape, int(df['a'].sum()))\n```\n</Code>"
FAIL = "<Code>\n```python\nprint('before')\nitems = {}\nitems['missing']\n```\n</Code>"
PID_THEN_WAIT = "<Code>\n```python\nimport os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n```\n</Code>"


@pytest.fixture
def jp_server_config(llm: ScriptedLLM, kernel_gateway: RunningGateway) -> Iterator[Config]:
    # GatewayClient is a process-wide singleton: this server's settings, none left behind.
    GatewayClient.clear_instance()
    yield Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_deepanalyze": True}},
            "GatewayClient": {"url": kernel_gateway.url, "auth_token": kernel_gateway.token},
            "DeepAnalyze": {"model": llm.url, "execution_timeout": 60.0},
            "DeepAnalyzeExtension": {"variables_timeout": 10.0},
        }
    )
    GatewayClient.clear_instance()


@dataclass
class GatewayNotebook:
    """A notebook session whose kernel runs on the gateway; cells go through the server's
    kernel websocket, as the browser's do."""

    path: str
    kernel_id: str
    ws: Any

    def _send(self, msg_type: str, content: dict[str, Any]) -> str:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id, "msg_type": msg_type, "session": "browser", "username": "user",
            "version": "5.3", "date": datetime.now(timezone.utc).isoformat(),
        }
        self.ws.write_message(
            json.dumps(
                {"header": header, "parent_header": {}, "metadata": {}, "buffers": [],
                 "channel": "shell", "content": content}
            )
        )
        return msg_id

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until the kernel answers kernel_info and its iopub messages reach us (as
        frontends do after a restart: the new kernel's first messages can be missed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg_id = self._send("kernel_info_request", {})
            replied = False
            try:
                while True:
                    msg = json.loads(await asyncio.wait_for(self.ws.read_message(), 1.0))
                    if msg.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    replied = replied or msg["msg_type"] == "kernel_info_reply"
                    if replied and msg["channel"] == "iopub":
                        return
            except asyncio.TimeoutError:
                continue
        raise AssertionError("the kernel did not become ready")

    async def run(self, code: str) -> str:
        msg_id = self._send(
            "execute_request",
            {"code": code, "silent": False, "store_history": True, "user_expressions": {},
             "allow_stdin": False, "stop_on_error": True},
        )
        printed: list[str] = []
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.read_message(), 60))
            if msg.get("parent_header", {}).get("msg_id") != msg_id or msg["channel"] != "iopub":
                continue
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                printed.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(printed)


@pytest.fixture
async def notebook(
    jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Any, jp_serverapp: Any
) -> AsyncIterator[GatewayNotebook]:
    assert isinstance(jp_serverapp.kernel_manager, GatewayMappingKernelManager)
    (jp_root_dir / "work").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), jp_root_dir / "work" / "analysis.ipynb")
    response = await jp_fetch(
        "api", "sessions", method="POST",
        body=json.dumps({"path": "work/analysis.ipynb", "type": "notebook", "kernel": {"name": "python3"}}),
    )
    kernel_id = json.loads(response.body)["kernel"]["id"]
    ws = await jp_ws_fetch("api", "kernels", kernel_id, "channels")
    try:
        yield GatewayNotebook("work/analysis.ipynb", kernel_id, ws)
    finally:
        ws.close()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE", raise_error=False)


async def test_a_run_uses_the_remote_kernel_its_df_and_reports_errors_as_locally(
    api: DeepAnalyzeAPI, notebook: GatewayNotebook, llm: ScriptedLLM
) -> None:
    await notebook.run("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})")
    llm.turns.extend([PRINT_DF, FAIL, ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path, variables=["df"])
    events = await api.watch(run_id)

    first_message = llm.requests[0]["messages"][0]["content"]
    assert '"type": "pandas.DataFrame"' in first_message and '"columns": "a (int64), b (' in first_message
    first, second = of_type(events, "execution_finished")
    assert (first["status"], first["feedback"]) == ("ok", "(3, 2) 6\n")
    assert second["status"] == "error"
    assert second["feedback"] == (
        "before\n[Error]:\nTraceback (most recent call last):\n"
        '  File "<string>", line 3, in <module>\n'
        "    items['missing']\n"
        "KeyError: 'missing'"
    )
    outputs = [e["output"] for e in of_type(events, "output")]
    assert outputs[0] == {"output_type": "stream", "name": "stdout", "text": "(3, 2) 6\n"}
    assert [o["output_type"] for o in outputs[1:]] == ["stream", "error"]
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "completed"
    # The agent worked in the user's remote kernel: what it made is there.
    await notebook.run("kept = 'yes'")
    assert await notebook.run("print(kept, 'items' in dir())") == "yes True\n"


async def test_the_variables_endpoint_inspects_the_remote_kernel(
    api: DeepAnalyzeAPI, notebook: GatewayNotebook
) -> None:
    await notebook.run("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})\nn = 5")
    reply = await api.call("GET", "kernels", notebook.kernel_id, "variables")
    assert reply.code == 200
    [variable] = reply.body["variables"]
    assert (variable["name"], variable["type"], variable["shape"]) == ("df", "pandas.DataFrame", [3, 1])
    assert variable["columns"] == [{"name": "a", "dtype": "int64"}]
    # The probe left no trace in the user's namespace or history.
    assert await notebook.run("print(sorted(k for k in globals() if not k.startswith('_')))") == (
        "['In', 'Out', 'df', 'exit', 'get_ipython', 'n', 'open', 'pd', 'quit']\n"
    )


async def test_cancel_interrupts_the_remote_kernel_within_two_seconds(
    api: DeepAnalyzeAPI, notebook: GatewayNotebook, llm: ScriptedLLM
) -> None:
    await notebook.run("kept = 41")
    llm.turns.extend([LOOP, ANSWER])
    run_id = await api.start_run(kernel_id=notebook.kernel_id)
    ws = await api.connect(run_id)
    seen = await api.receive(ws, until="output")
    assert seen[-1]["output"]["text"] == "looping\n"
    started = time.monotonic()
    cancelled = await api.call("POST", "runs", run_id, "cancel")
    rest = await api.receive(ws)
    elapsed = time.monotonic() - started
    print(f"cancel on a gateway kernel ended the run in {elapsed:.2f} s")
    assert cancelled.body == {"run_id": run_id, "status": "cancelled"}
    assert elapsed <= 2.0
    assert of_type(rest, "execution_finished")[0]["status"] == "interrupted"
    assert rest[-1]["status"] == "cancelled"
    assert await notebook.run("print(kept + 1)") == "42\n"  # interrupted, not restarted


async def test_a_remote_kernel_that_dies_fails_the_run_with_a_clear_error(
    api: DeepAnalyzeAPI, notebook: GatewayNotebook, llm: ScriptedLLM
) -> None:
    import os
    import signal

    llm.turns.extend([PID_THEN_WAIT, ANSWER])
    run_id = await api.start_run(kernel_id=notebook.kernel_id)
    ws = await api.connect(run_id)
    seen = await api.receive(ws, until="output")
    os.kill(int(seen[-1]["output"]["text"]), signal.SIGKILL)
    rest = await api.receive(ws)
    finished = rest[-1]
    assert finished["type"] == "run_finished" and finished["status"] == "failed"
    assert "the kernel restarted during the execution; its variables are gone" in finished["error"]
    # The gateway restarted the kernel; the user's notebook goes on in the new one.
    await notebook.ready()
    assert await notebook.run("print('back')") == "back\n"
    # The next run attaches to the restarted kernel afresh.
    llm.replace_turns([PRINT_DF, ANSWER])
    await notebook.run("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3], 'b': [4, 5, 6]})")
    again = await api.watch(await api.start_run(kernel_id=notebook.kernel_id))
    assert of_type(again, "execution_finished"), again
    assert of_type(again, "execution_finished")[0]["feedback"] == "(3, 2) 6\n"
    assert again[-1]["status"] == "completed"
