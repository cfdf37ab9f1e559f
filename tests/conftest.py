"""Fixtures shared by the test suite: the shared data folder, the scripted model server and a
real Jupyter Kernel Gateway; the ``gpu`` marker's skip where there is no CUDA GPU."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from jupyter_deepanalyze.execution.gateway import GatewayEndpoint
from jupyter_deepanalyze.execution.local_gateway import LocalGateway

from .scripted_llm import ScriptedLLM, Turn

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``../shared`` beside the repository (read-only), or ``$DEEPANALYZE_SHARED``."""
    return Path(os.environ.get("DEEPANALYZE_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not (path / "examples").is_dir():
        pytest.fail(f"the shared data folder is missing: {path} (set DEEPANALYZE_SHARED)")
    return path


@pytest.fixture(scope="session")
def simpson_csv(shared: Path) -> Path:
    return shared / "examples" / "simpson" / "Simpson.csv"


@pytest.fixture
def scripted_llm() -> Iterator[type[ScriptedLLM]]:
    """A factory: ``llm = scripted_llm(turns, **options)``; every server is stopped afterwards."""
    servers: list[ScriptedLLM] = []

    def make(turns: Sequence[Turn], **options: object) -> ScriptedLLM:
        server = ScriptedLLM(turns, **options).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in servers:
        server.stop()


@functools.cache
def _no_cuda_reason() -> str | None:
    """Why CUDA tests cannot run here (asked once, and only when one is about to run)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed: the CUDA tests need it"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        reason = _no_cuda_reason()
        if reason is not None:
            pytest.skip(f"gpu: {reason}")


@dataclass
class RunningGateway:
    """A real Jupyter Kernel Gateway on 127.0.0.1; its kernels' TMPDIR and cwd under ``kernel_side``."""

    gateway: LocalGateway
    kernel_side: Path

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
    """``jupyter kernelgateway`` (a free port, a token), started once per session.

    Its kernels get their own temporary directory, so a test can tell a folder made on
    the kernel's side from one made by the test process.
    """
    kernel_side = tmp_path_factory.mktemp("kernel-side")
    (kernel_side / "tmp").mkdir()
    gateway = LocalGateway(cwd=kernel_side, env={"TMPDIR": str(kernel_side / "tmp")}, pass_env=["TMPDIR"])
    with gateway:
        yield RunningGateway(gateway, kernel_side)
