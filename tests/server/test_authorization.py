"""Every endpoint asks the server's authorizer (resource ``deepanalyze``, and ``kernels``
for what executes code), so JupyterHub-style permission policies apply to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jupyter_core.paths import jupyter_data_dir
from jupyter_server.auth import Authorizer
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

from jupyter_deepanalyze.events import RunFinished, RunStarted, SegmentFinished
from jupyter_deepanalyze.server.eventlog import EventLog

from .conftest import QUESTION, DeepAnalyzeAPI, NotebookKernel


class ViewerAuthorizer(Authorizer):
    """A viewer's policy: may read DeepAnalyze runs (``read``), may not start, cancel or
    approve them (``write``) or execute code (``execute``)."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource == "deepanalyze":
            return action == "read"
        return not (resource == "kernels" and action == "execute")


@pytest.fixture
def jp_server_config(jp_server_config: Config) -> Config:
    jp_server_config.ServerApp.authorizer_class = ViewerAuthorizer
    return jp_server_config


def write_finished_run(run_id: str) -> list[dict[str, Any]]:
    """A finished run's log, as an earlier server left it in the runs folder."""
    events = [
        RunStarted(run_id=run_id, seq=0, question=QUESTION, model="DeepAnalyze-8B").to_json(),
        SegmentFinished(run_id=run_id, seq=1, step=1, tag="Answer", text="Done.").to_json(),
        RunFinished(run_id=run_id, seq=2, status="completed").to_json(),
    ]
    log = EventLog(Path(jupyter_data_dir()) / "deepanalyze" / "runs", run_id)
    for event in events:
        log.append(event)
    log.close()
    return events


async def test_a_viewer_can_look_but_not_run_cancel_approve_or_probe(
    api: DeepAnalyzeAPI, notebook: NotebookKernel
) -> None:
    assert (await api.call("GET", "runs")).code == 200
    assert (await api.call("GET", "models")).code == 200
    run_id = "0" * 32
    write_finished_run(run_id)
    refused = [
        await api.call("POST", "runs", body={"question": QUESTION, "notebook_path": notebook.path}),
        await api.call("POST", "runs", run_id, "cancel"),
        await api.call("POST", "runs", run_id, "approve", body={"cell_id": "c", "action": "run"}),
        await api.call("GET", "kernels", notebook.kernel_id, "variables"),  # a read that executes
    ]
    assert [r.code for r in refused] == [403, 403, 403, 403]


async def test_reading_a_runs_events_needs_read_alike_over_rest_and_the_websocket(api: DeepAnalyzeAPI) -> None:
    run_id = "1" * 32
    events = write_finished_run(run_id)
    snapshot = await api.call("GET", "runs", run_id)
    assert snapshot.code == 200 and snapshot.body["events"] == events
    assert await api.watch(run_id) == events  # the same events, to the same viewer
    with pytest.raises(HTTPClientError) as unknown:
        await api.connect("2" * 32)
    assert unknown.value.code == 404  # authorized to read; there is no such run
