"""A real Jupyter server with the extension, real notebook sessions and kernels, the scripted model.

pytest-jupyter provides the server (``jp_serverapp``, ``jp_fetch``, ``jp_ws_fetch``);
pytest-asyncio runs the tests, on the very loop the server was set up on.
"""

from __future__ import annotations

import ast
import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client import AsyncKernelClient
from pytest_jupyter.jupyter_server import *  # noqa: F403
from tornado.websocket import WebSocketClientConnection
from traitlets.config import Config

from ..scripted_llm import ScriptedLLM

# pytest-asyncio runs the coroutine tests; pytest-jupyter's own runner hooks would compete.
for _hook in ("pytest_pyfunc_call", "pytest_pycollect_makeitem"):
    globals().pop(_hook, None)

QUESTION = "What is in df?"


@pytest.fixture
def jp_asyncio_loop(_function_scoped_runner: Any) -> asyncio.AbstractEventLoop:
    """The server lives on the loop pytest-asyncio (>= 1.0, its runner fixture) runs the test in."""
    return _function_scoped_runner.get_loop()


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    """The extension's model: a scripted OpenAI-compatible server; tests append turns."""
    with ScriptedLLM([]) as server:
        yield server


@pytest.fixture
def unreachable_model() -> str:
    """An OpenAI-compatible URL on a local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def jp_server_config(llm: ScriptedLLM, unreachable_model: str) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_deepanalyze": True}},
            "DeepAnalyze": {
                "model": llm.url,
                "allowed_models": [unreachable_model],
                "execution_timeout": 60.0,
            },
            "DeepAnalyzeExtension": {"variables_timeout": 2.0},
        }
    )


@dataclass
class Reply:
    code: int
    body: dict[str, Any]


class DeepAnalyzeAPI:
    """The HTTP/WS API as a client that knows nothing else would use it."""

    def __init__(self, fetch: Any, ws_fetch: Any) -> None:
        self.fetch = fetch
        self.ws_fetch = ws_fetch

    async def call(self, method: str, *parts: str, body: Any = None, **options: Any) -> Reply:
        payload = None if body is None else json.dumps(body)
        if method == "POST" and payload is None:
            payload = ""
        response = await self.fetch(
            "deepanalyze", *parts, method=method, body=payload, raise_error=False, **options
        )
        text = response.body.decode() if response.body else ""
        return Reply(response.code, json.loads(text) if text.startswith("{") else {"text": text})

    async def start_run(self, **request: Any) -> str:
        reply = await self.call("POST", "runs", body={"question": QUESTION, **request})
        assert reply.code == 201, reply
        assert set(reply.body) == {"run_id", "kernel_id", "parent_run_id"}
        return reply.body["run_id"]

    async def connect(self, run_id: str, since: int = 0) -> WebSocketClientConnection:
        return await self.ws_fetch("deepanalyze", "runs", run_id, "events", params={"since": since})

    @staticmethod
    async def receive(ws: WebSocketClientConnection, until: str | None = None) -> list[dict[str, Any]]:
        """Events until one of type ``until`` (inclusive), or until the server closes."""
        events: list[dict[str, Any]] = []
        while True:
            message = await asyncio.wait_for(ws.read_message(), 60)
            if message is None:
                return events
            events.append(json.loads(message))
            if until is not None and events[-1]["type"] == until:
                return events

    async def watch(self, run_id: str, since: int = 0) -> list[dict[str, Any]]:
        """Every event of the run from ``since`` to ``run_finished`` (the server closes)."""
        ws = await self.connect(run_id, since)
        try:
            return await self.receive(ws)
        finally:
            ws.close()


@pytest.fixture
def api(jp_fetch: Any, jp_ws_fetch: Any) -> DeepAnalyzeAPI:
    return DeepAnalyzeAPI(jp_fetch, jp_ws_fetch)


@dataclass
class NotebookKernel:
    """A notebook session opened through ``/api/sessions`` and a client of its kernel."""

    path: str
    kernel_id: str
    client: AsyncKernelClient

    async def run(self, code: str, *, printing: asyncio.Event | None = None) -> str:
        """Run ``code`` as a user's cell would; returns what it printed.

        ``printing`` is set when the cell first prints (a signal that it is running).
        """
        printed: list[str] = []

        def collect(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
                if printing is not None:
                    printing.set()
            elif msg["msg_type"] == "error":
                printed.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

        await self.client.execute_interactive(code, timeout=60, output_hook=collect)
        return "".join(printed)

    async def state(self) -> tuple[int, list[str]]:
        """(execution count, sorted names of the user namespace), asked silently."""
        reply = await self.client.execute_interactive(
            "", silent=True, store_history=False, user_expressions={"names": "sorted(globals())"}, timeout=30
        )
        content = reply["content"]
        names = content["user_expressions"]["names"]["data"]["text/plain"]
        return content["execution_count"], ast.literal_eval(names)


@pytest.fixture
async def notebook(jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> AsyncIterator[NotebookKernel]:
    """``work/analysis.ipynb`` opened with a python3 kernel (its cwd: ``work/``)."""
    folder = jp_root_dir / "work"
    folder.mkdir()
    nbformat.write(nbformat.v4.new_notebook(), folder / "analysis.ipynb")
    response = await jp_fetch(
        "api",
        "sessions",
        method="POST",
        body=json.dumps({"path": "work/analysis.ipynb", "type": "notebook", "kernel": {"name": "python3"}}),
    )
    kernel_id = json.loads(response.body)["kernel"]["id"]
    kernel = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    await kernel.ready
    client = kernel.client()
    client.start_channels()
    await client.wait_for_ready(timeout=60)
    try:
        yield NotebookKernel("work/analysis.ipynb", kernel_id, client)
    finally:
        client.stop_channels()
