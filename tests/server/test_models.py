"""``GET /deepanalyze/models`` and where the ``DeepAnalyze`` configuration comes from."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from ..scripted_llm import ScriptedLLM
from .conftest import DeepAnalyzeAPI


@pytest.fixture
def jp_server_config(llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DEEPANALYZE_MODEL", llm.url)  # no DeepAnalyze.model in the config files
    return Config({"ServerApp": {"jpserver_extensions": {"jupyter_deepanalyze": True}}})


@pytest.fixture
def jp_argv(unreachable_model: str) -> list[str]:
    return [f"--DeepAnalyze.allowed_models={unreachable_model}"]


async def test_models_lists_the_configured_and_allowed_models_and_which_answer(
    api: DeepAnalyzeAPI, llm: ScriptedLLM, unreachable_model: str
) -> None:
    reply = await api.call("GET", "models")
    assert reply.code == 200
    assert reply.body["default"] == llm.url  # from $DEEPANALYZE_MODEL
    available, unreachable = reply.body["models"]  # the allowed model came from the command line
    assert available == {
        "spec": llm.url,
        "name": "DeepAnalyze-8B",
        "dialect": "native",
        "available": True,
        "context_window": 32768,  # the server's max_model_len
    }
    assert unreachable["spec"] == unreachable_model
    assert unreachable["available"] is False
    assert unreachable["error"].startswith(f"No model server at {unreachable_model}: start it")
    assert unreachable["error"].endswith("(DeepAnalyze.model, DeepAnalyze.allowed_models).")  # where to set it
    assert "\n" not in unreachable["error"]  # one line, no traceback
    assert llm.requests == []  # probed with GET /models only, never a chat request
    assert llm.model_list_calls == 1
