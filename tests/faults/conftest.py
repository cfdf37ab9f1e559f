"""The fault matrix: a real Jupyter server with the extension, real notebook kernels, the
scripted model server (which can also stall, cut a stream mid-token, reset the connection
and send junk), and one check every test ends with (``checks.RunChecks``).

The server's fixtures are ``tests/server``'s (pytest-jupyter's server on the test's loop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..server.conftest import *  # noqa: F403  (the server, the API client, the notebook kernel)
from ..server.conftest import DeepAnalyzeAPI, NotebookKernel
from .checks import RunChecks, UserWork


@pytest.fixture
async def user_work(notebook: NotebookKernel, jp_root_dir: Path) -> UserWork:
    """The user's own cells in the notebook file, and the variables they made in the kernel."""
    work = UserWork(notebook, jp_root_dir / notebook.path)
    await work.create()
    return work


@pytest.fixture
def checks(api: DeepAnalyzeAPI, jp_serverapp: Any, user_work: UserWork) -> RunChecks:
    return RunChecks(api, jp_serverapp, user_work)
