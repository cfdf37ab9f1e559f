"""Jupyter's auth on every endpoint: token or cookie+XSRF, origin checks, paths inside the root."""

from __future__ import annotations

import os
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from .conftest import QUESTION, DeepAnalyzeAPI, NotebookKernel

NO_TOKEN = {"Authorization": ""}  # jp_fetch adds the token header unless it is set


def cookies_of(response: Any) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("Set-Cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


async def test_every_endpoint_refuses_requests_without_a_token(
    api: DeepAnalyzeAPI, notebook: NotebookKernel
) -> None:
    run_id = "0" * 32
    requests = [
        ("GET", ("models",)),
        ("GET", ("runs",)),
        ("POST", ("runs",)),
        ("GET", ("runs", run_id)),
        ("POST", ("runs", run_id, "cancel")),
        ("POST", ("runs", run_id, "approve")),
        ("GET", ("kernels", notebook.kernel_id, "variables")),
    ]
    for method, parts in requests:
        reply = await api.call(method, *parts, headers=dict(NO_TOKEN))
        assert reply.code in (401, 403), (method, parts, reply)
    with pytest.raises(HTTPClientError) as refused:
        await api.ws_fetch("deepanalyze", "runs", run_id, "events", headers=dict(NO_TOKEN))
    assert refused.value.code in (401, 403)


@pytest.fixture
async def cookie_session(api: DeepAnalyzeAPI, jp_serverapp: Any) -> dict[str, str]:
    """A browser-like login: the token typed into the login form; returns the cookies."""
    login_page = await api.fetch("login", headers=dict(NO_TOKEN))
    xsrf = cookies_of(login_page)["_xsrf"]
    logged_in = await api.fetch(
        "login",
        method="POST",
        headers={**NO_TOKEN, "Cookie": f"_xsrf={xsrf}"},
        body=urllib.parse.urlencode({"_xsrf": xsrf, "password": jp_serverapp.identity_provider.token}),
        follow_redirects=False,
        raise_error=False,
    )
    assert logged_in.code == 302
    return {**cookies_of(logged_in), "_xsrf": xsrf}


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {**NO_TOKEN, "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


async def test_cookie_sessions_need_the_xsrf_token_to_post(
    api: DeepAnalyzeAPI, cookie_session: dict[str, str]
) -> None:
    browser = cookie_header(cookie_session)
    readable = await api.call("GET", "runs", headers=browser)
    assert readable.code == 200  # the cookie authenticates
    for xsrf_header in ({}, {"X-XSRFToken": "forged"}):
        refused = await api.call("POST", "runs", body={}, headers={**browser, **xsrf_header})
        assert refused.code == 403
    accepted = await api.call("POST", "runs", body={}, headers={**browser, "X-XSRFToken": cookie_session["_xsrf"]})
    assert accepted.code == 400  # past auth and XSRF, refused only for lacking a question
    assert accepted.body["message"].startswith("'question' is required")


async def test_the_events_websocket_checks_the_origin_of_cookie_sessions(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, cookie_session: dict[str, str], llm: Any, jp_http_port: int
) -> None:
    llm.turns.append("<Answer>\nok\n</Answer>")
    run_id = await api.start_run(notebook_path=notebook.path)
    # The login cookie is named after the host it was set for.
    browser = {**cookie_header(cookie_session), "Host": f"127.0.0.1:{jp_http_port}"}
    with pytest.raises(HTTPClientError) as refused:
        await api.ws_fetch("deepanalyze", "runs", run_id, "events", headers={**browser, "Origin": "http://evil.example"})
    assert refused.value.code == 403
    ws = await api.ws_fetch("deepanalyze", "runs", run_id, "events", headers=browser)
    events = await api.receive(ws)
    assert events[-1]["type"] == "run_finished"
    missing = await api.call("GET", "runs", "f" * 32)
    assert missing.code == 404


async def test_files_outside_the_server_root_are_refused(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, jp_root_dir: Path
) -> None:
    outside = jp_root_dir.parent / "outside.csv"
    outside.write_text("secret,1\n")
    os.symlink(outside, jp_root_dir / "link.csv")
    os.symlink(jp_root_dir.parent, jp_root_dir / "up")
    (jp_root_dir / ".hidden.csv").write_text("a\n")
    start = {"question": QUESTION, "notebook_path": notebook.path}
    for path in ("../outside.csv", "work/../../outside.csv", "link.csv", "up/outside.csv"):
        reply = await api.call("POST", "runs", body={**start, "files": [path]})
        assert (reply.code, reply.body["message"]) == (400, f"{path!r} is outside the server root."), path
    # API paths are relative to the root, a leading slash included: no way out either.
    absolute = await api.call("POST", "runs", body={**start, "files": [str(outside)]})
    assert absolute.code == 400 and absolute.body["message"].startswith("No such file or folder under the server root")
    hidden = await api.call("POST", "runs", body={**start, "files": [".hidden.csv"]})
    assert (hidden.code, hidden.body["message"]) == (400, "'.hidden.csv' is a hidden file or folder.")
    assert (await api.call("GET", "runs")).body == {"runs": []}  # nothing started


async def test_bad_requests_get_one_line_answers(api: DeepAnalyzeAPI, notebook: NotebookKernel) -> None:
    cases = [
        ({"notebook_path": notebook.path}, 400, "'question' is required"),
        ({"question": QUESTION}, 400, "Give 'notebook_path'"),
        ({"question": QUESTION, "notebook_path": "nowhere.ipynb"}, 404, "No kernel is running for 'nowhere.ipynb'"),
        ({"question": QUESTION, "kernel_id": "no-such-kernel"}, 404, "No such kernel"),
        ({"question": QUESTION, "notebook_path": notebook.path, "variables": ["df"]}, 400, "No variable named 'df'"),
        ({"question": QUESTION, "notebook_path": notebook.path, "variables": ["1x"]}, 400, "Not a Python variable"),
        ({"question": QUESTION, "notebook_path": notebook.path, "approval": "sometimes"}, 400, "'approval' must be"),
        ({"question": QUESTION, "notebook_path": notebook.path, "model": "http://elsewhere:8000/v1"}, 403,
         "Model 'http://elsewhere:8000/v1' is not allowed on this server"),
    ]
    for body, code, message in cases:
        reply = await api.call("POST", "runs", body=body)
        assert (reply.code, reply.body["message"][: len(message)]) == (code, message), body
        assert "\n" not in reply.body["message"] and "Traceback" not in str(reply.body)
