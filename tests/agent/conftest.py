"""The agent's tests run on Simpson.csv staged into a run folder, in a real kernel there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jupyter_deepanalyze.execution.kernel import KernelExecutor
from jupyter_deepanalyze.workspace import stage_inputs


@pytest.fixture
async def workdir(tmp_path: Path, simpson_csv: Path) -> Path:
    stage_inputs([simpson_csv], tmp_path)
    return tmp_path


@pytest.fixture
async def executor(workdir: Path) -> AsyncIterator[KernelExecutor]:
    executor = await KernelExecutor.start(cwd=workdir)
    yield executor
    await executor.shutdown()
