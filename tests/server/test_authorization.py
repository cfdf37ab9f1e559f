"""Every endpoint asks the server's authorizer (resource ``deepanalyze``, and ``kernels``
for what executes code), so JupyterHub-style permission policies apply to it."""

from __future__ import annotations

from typing import Any

import pytest
from jupyter_server.auth import Authorizer
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

from .conftest import QUESTION, DeepAnalyzeAPI, NotebookKernel


class ViewerAuthorizer(Authorizer):
    """A viewer's policy: may read DeepAnalyze runs, may not start them or execute code."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource == "deepanalyze":
            return action == "read"
        return not (resource == "kernels" and action == "execute")


@pytest.fixture
def jp_server_config(jp_server_config: Config) -> Config:
    jp_server_config.ServerApp.authorizer_class = ViewerAuthorizer
    return jp_server_config


async def test_a_viewer_can_look_but_not_run_cancel_approve_or_probe(
    api: DeepAnalyzeAPI, notebook: NotebookKernel
) -> None:
    assert (await api.call("GET", "runs")).code == 200
    assert (await api.call("GET", "models")).code == 200
    run_id = "0" * 32
    refused = [
        await api.call("POST", "runs", body={"question": QUESTION, "notebook_path": notebook.path}),
        await api.call("POST", "runs", run_id, "cancel"),
        await api.call("POST", "runs", run_id, "approve", body={"cell_id": "c", "action": "run"}),
        await api.call("GET", "kernels", notebook.kernel_id, "variables"),  # a read that executes
    ]
    assert [r.code for r in refused] == [403, 403, 403, 403]
    with pytest.raises(HTTPClientError) as socket_refused:
        await api.ws_fetch("deepanalyze", "runs", run_id, "events")
    assert socket_refused.value.code == 403
