"""Hostile and unlucky requests: folders with links out of the root, many files, paths that
escape, models not allowed, bodies that are no UTF-8 JSON or too large, approvals that are
late, doubled or wrong, and edited approvals of odd shapes."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from jupyter_deepanalyze.protocol import extract_code, replace_code

from ..scripted_llm import ScriptedLLM
from .checks import RunChecks, of_type

ANSWER = "<Answer>\nDone.\n</Answer>"


def code_turn(code: str) -> str:
    return f"<Code>\n```python\n{code}\n```\n</Code>"


async def test_a_folder_listing_stays_inside_the_root_and_is_bounded(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks, jp_root_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sub = jp_root_dir / "work" / "sub"
    sub.mkdir()
    for i in range(250):
        (sub / f"part{i:03d}.csv").write_text("a\n1\n")
    os.symlink("/etc/passwd", sub / "passwd.csv")
    os.symlink("/etc", sub / "etc")
    os.symlink(sub / "part000.csv", sub / "inside.csv")  # a link that stays inside: listed
    llm.turns.append(ANSWER)
    with caplog.at_level(logging.WARNING):
        run_id = await api.start_run(notebook_path=notebook.path, files=["work/sub"])
        await checks.finished(run_id, "completed")
    first = llm.requests[0]["messages"][0]["content"]
    assert "passwd" not in first and "etc" not in first
    assert first.count('"name": "sub/') == 200 and '"name": "sub/inside.csv"' in first
    assert "... and 51 more files" in first  # 251 inside the root, 200 described
    skipped = [r for r in caplog.records if "links outside the server root" in r.getMessage()]
    assert sorted(Path(r.args[0]).name for r in skipped) == ["etc", "passwd.csv"]
    # The listing ran off the server's event loop (in a worker thread).
    assert {r.threadName for r in skipped} != {threading.main_thread().name}


async def test_paths_that_escape_the_root_are_refused(
    api: Any, notebook: Any, checks: RunChecks, jp_root_dir: Path
) -> None:
    (jp_root_dir.parent / "outside.csv").write_text("secret\n")
    os.symlink(jp_root_dir.parent / "outside.csv", jp_root_dir / "link.csv")
    for path in ("../outside.csv", "work/../../outside.csv", "link.csv"):
        reply = await api.call("POST", "runs", body={"question": "Q", "notebook_path": notebook.path, "files": [path]})
        assert (reply.code, reply.body["message"]) == (400, f"{path!r} is outside the server root.")
    assert (await api.call("GET", "runs")).body == {"runs": []}
    await checks.user_work.check()


async def test_a_model_not_allowed_is_refused(api: Any, notebook: Any, checks: RunChecks) -> None:
    reply = await api.call(
        "POST", "runs", body={"question": "Q", "notebook_path": notebook.path, "model": "http://evil.example/v1"}
    )
    assert reply.code == 403 and reply.body["message"].startswith("Model 'http://evil.example/v1' is not allowed")
    await checks.user_work.check()


async def test_bodies_that_are_not_utf8_json_or_too_large_get_one_line(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    for raw, code, message in [
        (b'{"question": "\xff\xfe"}', 400, "The request body is not UTF-8 text."),
        (b'{"question": ', 400, "The request body is not valid JSON."),
        (b"[1, 2]", 400, "The request body must be a JSON object."),
    ]:
        response = await api.fetch("deepanalyze", "runs", method="POST", body=raw, raise_error=False)
        assert (response.code, json.loads(response.body)["message"]) == (code, message)
    huge = json.dumps({"question": "x" * 10_000_000, "notebook_path": notebook.path})
    response = await api.fetch("deepanalyze", "runs", method="POST", body=huge, raise_error=False)
    answer = json.loads(response.body)
    assert response.code == 413
    assert answer["message"] == (
        f"The request is too large ({len(huge)} bytes; at most 1048576): shorten the question."
    )
    assert "Traceback" not in response.body.decode()
    # A question with a lone surrogate (valid JSON) is cleaned, not a crash.
    llm.turns.append(ANSWER)
    run_id = await api.start_run(question="What about \ud800?", notebook_path=notebook.path)
    events = await checks.finished(run_id, "completed")
    assert events[0]["question"] == "What about \ufffd?"
    listed = await api.call("GET", "runs")
    assert [r["run_id"] for r in listed.body["runs"]] == [run_id]  # the refused ones left nothing


async def test_late_doubled_and_wrong_approvals_get_409(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    llm.turns.extend([code_turn("print('once')"), code_turn("print('never')")])
    run_id = await api.start_run(notebook_path=notebook.path, approval="manual")
    ws = await api.connect(run_id)
    first = (await api.receive(ws, until="approval_required"))[-1]
    wrong = await api.call("POST", "runs", run_id, "approve", body={"cell_id": "da-nope-1", "action": "run"})
    assert wrong.code == 409
    ok = await api.call("POST", "runs", run_id, "approve", body={"cell_id": first["cell_id"], "action": "run"})
    twice = await api.call("POST", "runs", run_id, "approve", body={"cell_id": first["cell_id"], "action": "run"})
    assert (ok.code, twice.code) == (200, 409)
    second = (await api.receive(ws, until="approval_required"))[-1]
    ws.close()
    cancelled = await api.call("POST", "runs", run_id, "cancel")
    assert cancelled.body == {"run_id": run_id, "status": "cancelled"}
    late = await api.call("POST", "runs", run_id, "approve", body={"cell_id": second["cell_id"], "action": "run"})
    assert late.code == 409
    events = await checks.finished(run_id, "cancelled")
    assert [e["feedback"] for e in of_type(events, "execution_finished")] == ["once\n"]  # ran once, never twice


async def test_an_edited_approval_is_told_to_the_model_exactly(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    turn = "<Analyze>\nI will run print(1) to check.\n</Analyze>\n" + code_turn("print(1)")
    llm.turns.extend([turn, "<Code></Code>", ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path, approval="manual")
    ws = await api.connect(run_id)
    for edited in ("print(2)", "print(3)"):
        waiting = (await api.receive(ws, until="approval_required"))[-1]
        body = {"cell_id": waiting["cell_id"], "action": "run", "code": edited}
        assert (await api.call("POST", "runs", run_id, "approve", body=body)).code == 200
    ws.close()
    await checks.finished(run_id, "completed")
    messages = llm.requests[-1]["messages"]
    # Only the code inside <Code> changed: the plan still quotes what the model wrote.
    assert messages[1]["content"] == "<Analyze>\nI will run print(1) to check.\n</Analyze>\n" + code_turn("print(2)")
    assert messages[2]["content"] == "2\n"
    assert messages[3]["content"] == "<Code>\nprint(3)\n</Code>"  # an empty block gets the code inside
    assert messages[4]["content"] == "3\n"


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        ("<Code>\n```python\nprint(1)\n```\n</Code>", "<Code>\n```python\nprint(2)\n```\n</Code>"),
        ("<Code>print(1)</Code>", "<Code>print(2)</Code>"),
        ("<Code></Code>", "<Code>\nprint(2)\n</Code>"),
        ("<Code>\n```python\n```\n</Code>", "<Code>\n```python\nprint(2)\n```\n</Code>"),
        ("<Code>\n```py\nprint(1)\n```\n</Code>", "<Code>\n```py\nprint(2)\n```\n</Code>"),
        ("<Code>\n```python\nprint(1)\n", "<Code>\n```python\nprint(2)\n"),  # an unclosed fence
        ("<Code>\r\n```python\r\nprint(1)\r\n```\r\n</Code>", "<Code>\r\n```python\r\nprint(2)\r\n```\r\n</Code>"),
        ("<Understand>print(1) printed 1</Understand><Code>print(1)</Code>",
         "<Understand>print(1) printed 1</Understand><Code>print(2)</Code>"),
        ("<Code>x = 1</Code><Code>print(1)</Code>", "<Code>print(2)</Code><Code>print(1)</Code>"),
    ],
)
def test_an_edit_replaces_only_the_first_code_blocks_code(turn: str, expected: str) -> None:
    assert replace_code(turn, "print(2)\n") == expected
    assert extract_code(expected[expected.index("<Code>") + 6 :].split("</Code>")[0]) == "print(2)"
