"""A real Jupyter Kernel Gateway on 127.0.0.1 (a free port, a token), started once per session.

Its kernels get their own temporary directory (``TMPDIR`` under ``kernel_side``), so a
test can tell a folder made on the kernel's side from one made by the test process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jupyter_deepanalyze.execution.gateway import GatewayEndpoint
from jupyter_deepanalyze.execution.local_gateway import LocalGateway


@dataclass
class RunningGateway:
    gateway: LocalGateway
    kernel_side: Path  # the kernels' TMPDIR and working directory

    @property
    def endpoint(self) -> GatewayEndpoint:
        return self.gateway.endpoint

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def token(self) -> str:
        return self.gateway.token


@pytest.fixture(scope="session")
def kernel_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    kernel_side = tmp_path_factory.mktemp("kernel-side")
    (kernel_side / "tmp").mkdir()
    gateway = LocalGateway(cwd=kernel_side, env={"TMPDIR": str(kernel_side / "tmp")}, pass_env=["TMPDIR"])
    with gateway:
        yield RunningGateway(gateway, kernel_side)
