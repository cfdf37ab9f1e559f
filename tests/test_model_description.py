"""Describing a model spec (``jupyter deepanalyze models``, ``GET /deepanalyze/models``)
without loading weights or starting vLLM, by the same rule that opening it for a run uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_deepanalyze.config import DeepAnalyze
from jupyter_deepanalyze.llm import ModelError
from jupyter_deepanalyze.llm.description import describe
from jupyter_deepanalyze.llm.registry import open_model

JUPYTER = str(Path(sys.executable).parent / "jupyter")

# The console script's entry point, timed from after its imports; then what it imported.
TIMED_MODELS_COMMAND = """
import json, sys, time
from jupyter_deepanalyze import cli
sys.argv = ["jupyter-deepanalyze", "models", "--model", sys.argv[1]]
started = time.perf_counter()
try:
    code = cli.main()
except SystemExit as exit:
    code = exit.code
seconds = time.perf_counter() - started
heavy = sorted(m for m in ("torch", "transformers", "vllm") if m in sys.modules)
print(json.dumps({"code": code, "seconds": seconds, "imported": heavy}), file=sys.stderr)
"""


def model_folder(tmp_path: Path) -> Path:
    """A transformers model folder as far as describing goes: its config.json."""
    folder = tmp_path / "DeepAnalyze-8B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3", "max_position_embeddings": 40960}))
    return folder


def test_models_on_a_transformers_spec_answers_at_once_without_importing_torch(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", TIMED_MODELS_COMMAND, f"transformers:{folder}"],
        capture_output=True, text=True, timeout=120,
    )
    measured = json.loads(done.stderr.strip().splitlines()[-1])
    print(f"models on a transformers spec answered in {measured['seconds']:.3f} s")
    assert measured["code"] == 0, done.stderr
    assert measured["imported"] == []  # no torch, transformers or vllm: nothing was loaded
    assert measured["seconds"] < 0.5
    assert done.stdout.splitlines() == [
        f"spec:    transformers:{folder}",
        "name:    DeepAnalyze-8B",
        "dialect: native",
        "context: 40960 tokens",
        "status:  available",
    ]


def test_models_says_in_one_line_why_a_local_model_cannot_run(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    done = subprocess.run(
        [JUPYTER, "deepanalyze", "models", "--model", f"transformers:{missing}"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "status:  unavailable" in done.stdout and "name:    model" in done.stdout
    assert done.stderr == f"jupyter deepanalyze: no model at {missing}\n"


async def test_a_served_model_is_described_from_get_models_with_its_context_window(scripted_llm) -> None:
    llm = scripted_llm([], max_model_len=8192)
    described = await describe(llm.url, DeepAnalyze())
    assert (described.name, described.dialect, described.available, described.context_window) == (
        "DeepAnalyze-8B",
        "native",
        True,
        8192,
    )
    assert llm.requests == [] and llm.model_list_calls == 1  # GET /models only


async def test_a_name_the_server_does_not_serve_is_refused_alike_by_describe_and_open_model(scripted_llm) -> None:
    llm = scripted_llm(["<Answer>never</Answer>"])
    config = DeepAnalyze(model_name="DeepAnalyze-8B-typo")
    described = await describe(llm.url, config)
    assert not described.available
    expected = f"The model server at {llm.url} does not serve 'DeepAnalyze-8B-typo' (it serves 'DeepAnalyze-8B')."
    assert described.error == expected
    with pytest.raises(ModelError) as refused:
        await open_model(config, llm.url)
    assert str(refused.value) == expected
    assert llm.requests == []  # refused before any chat request


async def test_an_unreachable_server_is_described_unavailable_with_one_line(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/v1"
    described = await describe(url, DeepAnalyze(model_name="DeepAnalyze-8B"))  # named: still probed
    assert not described.available
    assert described.error is not None and described.error.startswith(f"No model server at {url}: ")
    assert "\n" not in described.error
