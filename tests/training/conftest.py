"""Fixtures shared by the training tests: the repo root on sys.path, shared data, the tiny model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `training` is importable from the repo root, not installed
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    from training.data import shared_root

    root = shared_root()
    if not (root / "benchmarks" / "dabench").is_dir():
        pytest.fail(f"the shared data folder is missing: {root} (set DEEPANALYZE_SHARED)")
    return root


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
