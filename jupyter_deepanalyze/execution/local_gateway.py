"""A Jupyter Kernel Gateway on this machine, for the bench and the test suite.

Owns ``LocalGateway``: ``jupyter kernelgateway`` started as a subprocess listening on
127.0.0.1 only (a free port, a random token passed through the environment, never on the
command line), waited for until its REST API answers, and stopped with its kernels.

Must not be a product default: users point ``--gateway-url`` at their own gateway.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from .gateway import GatewayEndpoint, GatewayError

STARTUP_TIMEOUT = 60.0
INSTALL_HINT = "pip install jupyter_kernel_gateway  (or: pip install 'jupyter-deepanalyze[gateway]')"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalGateway:
    """``jupyter kernelgateway`` on 127.0.0.1; ``with LocalGateway() as gateway: gateway.endpoint``.

    ``cwd`` is where its kernels start; ``env`` is added to the gateway's environment and
    ``pass_env`` names the variables of it that kernels inherit (the gateway gives
    kernels only ``PATH`` and these).
    """

    def __init__(
        self,
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        pass_env: Sequence[str] = (),
        python: str = sys.executable,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.cwd = Path(cwd) if cwd is not None else None
        self.env = dict(env or {})
        self.pass_env = list(pass_env)
        self.python = python
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(16)
        self.port: int | None = None
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "not started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> GatewayEndpoint:
        return GatewayEndpoint(self.url, token=self.token)

    def command(self, port: int) -> list[str]:
        return [
            self.python, "-m", "kernel_gateway",
            "--KernelGatewayApp.ip=127.0.0.1",
            f"--KernelGatewayApp.port={port}",
            "--KernelGatewayApp.port_retries=0",
            "--KernelGatewayApp.list_kernels=True",
            f"--KernelGatewayApp.env_process_whitelist={self.pass_env!r}",
        ]

    def start(self) -> LocalGateway:
        """Start the gateway and wait until it answers; raises ``GatewayError`` if it cannot."""
        if self._process is not None:
            return self
        self.port = _free_port()
        log_dir = Path(tempfile.mkdtemp(prefix="deepanalyze-gateway-"))
        self.log_path = log_dir / "kernelgateway.log"
        env = {**os.environ, **self.env, "KG_AUTH_TOKEN": self.token}
        with open(self.log_path, "wb") as log_file:
            self._process = subprocess.Popen(
                self.command(self.port),
                cwd=self.cwd,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # stopped as a group, kernels included
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        headers = self.endpoint.request_headers()
        while True:
            code = self._process.poll()
            if code is not None:
                hint = f" ({INSTALL_HINT})" if "No module named kernel_gateway" in self._log_tail() else ""
                raise GatewayError(f"the kernel gateway exited with status {code}{hint}. Log: {self.log_path}")
            try:
                if httpx.get(f"{self.url}/api", headers=headers, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise GatewayError(
                    f"the kernel gateway did not answer within {self.startup_timeout:g} s. Log: {self.log_path}"
                )
            time.sleep(0.2)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
