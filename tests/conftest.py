"""Fixtures shared by the test suite: the shared data folder and the scripted model server."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

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
