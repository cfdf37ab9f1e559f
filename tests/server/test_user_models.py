"""A user's own model from JupyterLab: ``/deepanalyze/user-model`` (saved, tested, used by
runs), its owner-only file, the key never answered nor given to a kernel, and the admin's
switches (``allow_user_models``, the allow-list)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from traitlets.config import Config

from ..scripted_llm import ScriptedLLM
from .conftest import DeepAnalyzeAPI, NotebookKernel

KEY = "sk-user-secret-4711"


@pytest.fixture
def keyed_llm() -> Iterator[ScriptedLLM]:
    """The user's own model server: it answers only with the user's key."""
    with ScriptedLLM([], model="my-model", api_key=KEY) as server:
        yield server


@pytest.fixture
def jp_server_config(llm: ScriptedLLM, tmp_path: Path) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_deepanalyze": True}},
            "DeepAnalyze": {"model": llm.url, "execution_timeout": 60.0},
            "DeepAnalyzeExtension": {"user_models_dir": str(tmp_path / "user-models")},
        }
    )


async def test_a_saved_user_model_is_kept_owner_only_and_its_key_is_never_answered(
    api: DeepAnalyzeAPI, keyed_llm: ScriptedLLM, tmp_path: Path
) -> None:
    assert (await api.call("GET", "user-model")).body == {"model": None}
    saved = await api.call("PUT", "user-model", body={"url": keyed_llm.url + "/", "api_key": KEY})
    assert saved.code == 200
    assert saved.body == {"model": {"url": keyed_llm.url, "model_name": "", "has_api_key": True}}
    read = await api.call("GET", "user-model")
    assert read.body == saved.body and KEY not in str(read.body)
    folder = tmp_path / "user-models"
    (file,) = folder.iterdir()
    assert stat.S_IMODE(file.stat().st_mode) == 0o600 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    # Saving again without a key keeps the one kept; the model list probes with it.
    assert (await api.call("PUT", "user-model", body={"url": keyed_llm.url, "model_name": "my-model"})).code == 200
    listed = await api.call("GET", "models")
    mine = [m for m in listed.body["models"] if m.get("source") == "user"]
    assert mine == [
        {"spec": keyed_llm.url, "name": "my-model", "dialect": "generic", "available": True, "source": "user"}
    ]
    assert listed.body["user_models"] is True and KEY not in str(listed.body)
    assert (await api.call("DELETE", "user-model")).body == {"model": None}
    assert not list(folder.iterdir())


async def test_testing_settings_asks_the_servers_model_list_with_the_key(
    api: DeepAnalyzeAPI, keyed_llm: ScriptedLLM, unreachable_model: str
) -> None:
    good = await api.call("POST", "user-model", "test", body={"url": keyed_llm.url, "api_key": KEY})
    assert good.body == {"ok": True, "models": ["my-model"]}
    wrong_key = await api.call("POST", "user-model", "test", body={"url": keyed_llm.url, "api_key": "nope"})
    assert wrong_key.body["ok"] is False and "nope" not in wrong_key.body["error"]
    nothing = await api.call("POST", "user-model", "test", body={"url": unreachable_model})
    assert nothing.body["ok"] is False and nothing.body["error"].startswith(f"No model server at {unreachable_model}")
    assert keyed_llm.requests == []  # never a chat request
    bad = await api.call("POST", "user-model", "test", body={"url": "ftp://x"})
    assert bad.code == 400 and "OpenAI-compatible base URL" in bad.body["message"]
    assert (await api.call("GET", "user-model")).body == {"model": None}  # testing saves nothing


async def test_a_run_on_the_users_model_sends_their_key_to_it_and_never_to_the_kernel(
    api: DeepAnalyzeAPI, keyed_llm: ScriptedLLM, notebook: NotebookKernel
) -> None:
    await api.call("PUT", "user-model", body={"url": keyed_llm.url, "api_key": KEY})
    code = "import os\nprint(sorted(k for k, v in os.environ.items() if 'sk-user' in v))"
    keyed_llm.replace_turns([f"<Code>\n{code}\n</Code>", "<Answer>done</Answer>"])
    run_id = await api.start_run(notebook_path=notebook.path, model=keyed_llm.url)
    events = await api.watch(run_id)
    assert events[-1]["status"] == "completed", events[-1]
    printed = [e["output"].get("text") for e in events if e["type"] == "output"]
    assert printed == ["[]\n"]  # the kernel's environment holds no key
    assert len(keyed_llm.requests) == 2  # the keyed server answered: the key was sent to it
    assert KEY not in str(events) and KEY not in str(os.environ)


async def test_another_url_than_the_users_own_is_still_refused(api: DeepAnalyzeAPI, notebook: NotebookKernel) -> None:
    reply = await api.call("POST", "runs", body={"question": "Q", "notebook_path": notebook.path, "model": "http://127.0.0.1:1/v1"})
    assert reply.code == 403


class TestSwitchedOff:
    @pytest.fixture
    def jp_server_config(self, llm: ScriptedLLM, tmp_path: Path) -> Config:
        return Config(
            {
                "ServerApp": {"jpserver_extensions": {"jupyter_deepanalyze": True}},
                "DeepAnalyze": {"model": llm.url, "allow_user_models": False},
                "DeepAnalyzeExtension": {"user_models_dir": str(tmp_path / "user-models")},
            }
        )

    async def test_admins_can_switch_user_models_off(self, api: DeepAnalyzeAPI, keyed_llm: ScriptedLLM) -> None:
        refused = await api.call("PUT", "user-model", body={"url": keyed_llm.url})
        assert refused.code == 403 and "DeepAnalyze.allow_user_models" in refused.body["message"]
        assert (await api.call("GET", "models")).body["user_models"] is False


class TestAllowList:
    @pytest.fixture
    def jp_server_config(self, llm: ScriptedLLM, unreachable_model: str, tmp_path: Path) -> Config:
        return Config(
            {
                "ServerApp": {"jpserver_extensions": {"jupyter_deepanalyze": True}},
                "DeepAnalyze": {"model": llm.url, "allowed_models": [unreachable_model]},
                "DeepAnalyzeExtension": {"user_models_dir": str(tmp_path / "user-models")},
            }
        )

    async def test_with_an_allow_list_only_listed_urls_may_be_added(
        self, api: DeepAnalyzeAPI, keyed_llm: ScriptedLLM, unreachable_model: str
    ) -> None:
        refused = await api.call("PUT", "user-model", body={"url": keyed_llm.url})
        assert refused.code == 403 and "DeepAnalyze.allowed_models" in refused.body["message"]
        listed = await api.call("PUT", "user-model", body={"url": unreachable_model, "api_key": KEY})
        assert listed.code == 200
