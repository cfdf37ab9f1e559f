"""The administrator's allow-list: only allowed models are listed or run."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from ..scripted_llm import ScriptedLLM
from .conftest import DeepAnalyzeAPI, NotebookKernel


@pytest.fixture
def jp_server_config(llm: ScriptedLLM) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_deepanalyze": True}},
            "DeepAnalyze": {"model": llm.url, "allowed_models": ["tiny", "transformers:/nowhere/model"]},
        }
    )


async def test_only_allowed_models_are_listed_and_local_ones_are_not_loaded_to_list_them(
    api: DeepAnalyzeAPI, llm: ScriptedLLM
) -> None:
    reply = await api.call("GET", "models")
    assert reply.code == 200
    served, tiny, missing = reply.body["models"]
    assert served["spec"] == llm.url and served["available"] is True
    assert tiny == {"spec": "tiny", "name": "gemma-3-270m (tiny)", "dialect": "generic", "available": True}
    assert missing["spec"] == "transformers:/nowhere/model" and missing["available"] is False
    assert "no model at /nowhere/model" in missing["error"]


async def test_a_run_asking_for_another_model_is_refused(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM
) -> None:
    reply = await api.call(
        "POST", "runs", body={"question": "Q", "notebook_path": notebook.path, "model": "http://elsewhere:8000/v1"}
    )
    assert reply.code == 403
    assert "'http://elsewhere:8000/v1' is not allowed on this server" in reply.body["message"]
    assert "DeepAnalyze.allowed_models" in reply.body["message"]
    assert llm.requests == []
