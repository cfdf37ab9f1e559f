"""A Jupyter server with this extension on this machine, for the trust bench and the tests.

Owns ``LocalServer``: ``jupyter server`` started as a subprocess on 127.0.0.1 (a free
port, a random token passed through the environment, never on the command line), with a
root folder, a run-log folder and a model of the caller's, waited for until its log says
it listens; stopped by a signal of the caller's choice (SIGTERM, SIGKILL: faults that end
a whole server), its kernels never left behind; and the REST API and event websocket as a
client uses them.

Must not be a product default: users run their own Jupyter server.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

READY_LINE = "is running at:"
"""What the server logs once it listens."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalServer:
    """``jupyter server`` on 127.0.0.1 with ``root``, the run logs in ``runs_dir`` and ``model``;
    its Jupyter config, data and runtime folders under ``home``."""

    def __init__(self, root: Path, runs_dir: Path, model: str, home: Path, *, args: tuple[str, ...] = ()) -> None:
        self.root, self.runs_dir, self.model, self.home = root, runs_dir, model, home
        self.args = args
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
        env = {
            **os.environ,
            "JUPYTER_TOKEN": self.token,
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_DATA_DIR": str(self.home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
        }
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
                f"--port={self.port}", f"--ServerApp.root_dir={self.root}",
                f"--DeepAnalyzeExtension.runs_dir={self.runs_dir}", f"--DeepAnalyze.model={self.model}", *self.args,
            ],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        while True:  # its log says when it listens (or it died)
            line = self._lines.get(timeout=60)
            assert line, "the server exited while starting:\n" + "".join(self.log)
            if READY_LINE in line:
                return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.log.append(line)
            self._lines.put(line)
        self._lines.put("")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kernels(self) -> list[psutil.Process]:
        return psutil.Process(self.pid).children(recursive=True)

    def stop(self, sig: signal.Signals) -> int:
        """Send ``sig`` and wait for the server to exit; what it leaves running is killed."""
        assert self.process is not None
        orphans = self.kernels()
        self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        for child in orphans:
            if child.is_running():
                child.kill()
        return code

    # ---------------------------------------------------------------- the API

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"token {self.token}"}, timeout=60)

    async def open_notebook(self, client: httpx.AsyncClient, path: str) -> str:
        reply = await client.post(
            "/api/sessions", json={"path": path, "type": "notebook", "kernel": {"name": "python3"}}
        )
        assert reply.status_code == 201, reply.text
        return str(reply.json()["kernel"]["id"])

    async def follow(self, run_id: str, until: str | None = None) -> list[dict[str, Any]]:
        """The run's events from 0 to ``until`` (inclusive), or until the server closes."""
        url = f"ws://127.0.0.1:{self.port}/deepanalyze/runs/{run_id}/events"
        ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {self.token}"}))
        events: list[dict[str, Any]] = []
        try:
            while (message := await ws.read_message()) is not None:
                events.append(json.loads(message))
                if events[-1]["type"] == until:
                    break
        finally:
            ws.close()
        return events
