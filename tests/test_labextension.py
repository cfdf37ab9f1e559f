"""The JupyterLab frontend extension: shipped prebuilt with the package, and its unit tests.

The extension is built by the hatch-jupyter-builder hook during `pip install .`; these
tests check what a user gets from that install, then run the TypeScript unit tests
(vitest) so that `pytest` alone covers the frontend's logic too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LABEXTENSION_SOURCE = REPO / "labextension"
EXTENSION_NAME = "jupyter-deepanalyze"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _installed_extension_dir() -> Path:
    return Path(sys.prefix) / "share" / "jupyter" / "labextensions" / EXTENSION_NAME


def test_labextension_list_shows_the_extension_enabled_and_ok() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # The listing goes to stderr in some JupyterLab versions and is colourized.
    listing = _ANSI.sub("", result.stdout + result.stderr)
    # Only the extension's own row starts with its name: the listing's path lines may
    # contain it too (a checkout folder named jupyter-deepanalyze).
    lines = [words for words in map(str.split, listing.splitlines()) if words and words[0] == EXTENSION_NAME]
    assert lines, f"{EXTENSION_NAME} is not listed:\n{listing}"
    name, version, enabled, status, *_ = lines[0]
    assert (name, enabled, status) == (EXTENSION_NAME, "enabled", "OK"), listing
    assert version.startswith("v"), listing


def test_installed_extension_is_the_prebuilt_bundle_with_its_settings() -> None:
    installed = _installed_extension_dir()
    package = json.loads((installed / "package.json").read_text())
    build = package["jupyterlab"]["_build"]
    # The federated entry point and the style module the page loads must be there.
    assert (installed / build["load"]).is_file()
    assert (installed / "static" / "style.js").is_file()
    schema = json.loads(
        (installed / "schemas" / EXTENSION_NAME / "plugin.json").read_text()
    )
    assert set(schema["properties"]) == {"defaultModel", "approval", "cellPlacement"}
    install = json.loads((installed / "install.json").read_text())
    assert install["packageName"] == "jupyter-deepanalyze"


def _jlpm() -> list[str]:
    jlpm = shutil.which("jlpm") or shutil.which("jlpm", path=str(Path(sys.executable).parent))
    if jlpm is None:
        pytest.fail("jlpm (from jupyter-builder / jupyterlab) is not installed")
    return [jlpm]


@pytest.mark.timeout(600)
def test_frontend_unit_tests_pass() -> None:
    """Runs the vitest suite of labextension/ (materializer, transcript, MIME bundle)."""
    env = {**os.environ, "CI": "true", "FORCE_COLOR": "0"}
    if not (LABEXTENSION_SOURCE / "node_modules" / ".bin" / "vitest").exists():
        subprocess.run(
            [*_jlpm(), "install", "--immutable"],
            cwd=LABEXTENSION_SOURCE,
            env=env,
            check=True,
            timeout=540,
        )
    result = subprocess.run(
        [*_jlpm(), "test"],
        cwd=LABEXTENSION_SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = _ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode == 0, output
    assert re.search(r"Tests\s+\d+ passed", output), output
