"""Follow-ups and exports through the HTTP/WS API, on a notebook's live kernel."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from pypdf import PdfReader

from jupyter_deepanalyze.protocol import build_first_message

from ..scripted_llm import ScriptedLLM
from .conftest import QUESTION, DeepAnalyzeAPI, NotebookKernel

FIRST = [
    "<Analyze>\nSum a.\n</Analyze>\n<Code>\n```python\ntotal = 6\nprint(total)\n```\n</Code>",
    "<Answer>\n# Report\n\nThe total is 6.\n</Answer>",
]
FOLLOW = [
    "<Analyze>\nDouble the total from before.\n</Analyze>\n<Code>\n```python\n"
    "open('double.txt', 'w').write(str(total * 2))\nprint(total * 2)\n```\n</Code>",
    "<Answer>\n# Twice as much\n\nThe double is 12.\n</Answer>",
]
LOOP = "<Code>\n```python\nprint('looping', flush=True)\nwhile True:\n    pass\n```\n</Code>"
FOLLOW_UP = "And twice that?"


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


async def test_a_follow_up_continues_the_conversation_on_the_same_kernel_and_the_list_shows_the_chain(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM, jp_root_dir: Path
) -> None:
    llm.turns.extend(FIRST + FOLLOW)
    parent = await api.start_run(notebook_path=notebook.path)
    await api.watch(parent)
    sent_before = llm.requests[-1]["messages"]

    reply = await api.call(
        "POST", "runs", body={"question": FOLLOW_UP, "notebook_path": notebook.path, "parent_run_id": parent}
    )

    assert reply.code == 201, reply
    assert reply.body["parent_run_id"] == parent and reply.body["kernel_id"] == notebook.kernel_id
    run_id = reply.body["run_id"]
    events = await api.watch(run_id)
    assert events[0]["type"] == "run_started" and events[0]["parent_run_id"] == parent
    # PROTOCOL.md "Follow-ups": the parent's messages as sent, then the new question.
    assert llm.requests[2]["messages"] == sent_before + [
        {"role": "assistant", "content": FIRST[1]},
        {"role": "user", "content": build_first_message(FOLLOW_UP)},
    ]
    [finished] = of_type(events, "execution_finished")
    assert (finished["status"], finished["feedback"]) == ("ok", "12\n")  # `total` of the first run
    [artifacts] = of_type(events, "artifacts")
    assert artifacts["files"] == [{"path": "double.txt", "size": 2, "status": "created"}]
    report = [e for e in of_type(events, "cell") if e["metadata"]["deepanalyze"]["role"] == "report"][0]
    assert report["source"].endswith("**Files**\n\n- [double.txt](double.txt) (2 B, created)")
    assert (jp_root_dir / "work" / "double.txt").read_text() == "12"

    listed = (await api.call("GET", "runs", params={"kernel_id": notebook.kernel_id})).body["runs"]
    chain = {run["run_id"]: run["parent_run_id"] for run in listed}
    assert chain == {parent: None, run_id: parent}
    # The conversation is kept beside the log, owner-only, for follow-ups after a restart.
    kept = Path(jupyter_data_dir()) / "deepanalyze" / "runs" / f"{run_id}.messages.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text())["messages"][-1] == {"role": "assistant", "content": FOLLOW[1]}


async def test_a_follow_up_of_an_unknown_running_or_other_kernels_run_is_refused_with_a_reason(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM, jp_fetch: Any, jp_root_dir: Path
) -> None:
    unknown = await api.call(
        "POST", "runs", body={"question": "more?", "notebook_path": notebook.path, "parent_run_id": "f" * 32}
    )
    assert unknown.code == 404 and unknown.body["message"] == f"No run {'f' * 32!r}."

    llm.turns.extend([LOOP, "<Answer>\nstopped\n</Answer>"])
    running = await api.start_run(notebook_path=notebook.path)
    ws = await api.connect(running)
    await api.receive(ws, until="output")  # its loop runs now
    other = json.loads(
        (
            await jp_fetch(
                "api",
                "sessions",
                method="POST",
                body=json.dumps({"path": "other.ipynb", "type": "notebook", "kernel": {"name": "python3"}}),
            )
        ).body
    )["kernel"]["id"]

    busy = await api.call("POST", "runs", body={"question": "more?", "kernel_id": other, "parent_run_id": running})
    assert busy.code == 409
    assert busy.body["message"] == f"Run {running} has not finished: wait for it (or stop it) first."

    assert (await api.call("POST", "runs", running, "cancel")).body["status"] == "cancelled"
    elsewhere = await api.call("POST", "runs", body={"question": "more?", "kernel_id": other, "parent_run_id": running})
    assert elsewhere.code == 409
    assert elsewhere.body["message"].startswith(f"Run {running} ran on kernel {notebook.kernel_id}, not {other}")
    ws.close()


async def test_a_finished_conversation_exports_beside_the_notebook_as_pdf_markdown_and_html(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM, jp_root_dir: Path
) -> None:
    llm.turns.extend(FIRST + FOLLOW)
    parent = await api.start_run(notebook_path=notebook.path, question=QUESTION)
    await api.watch(parent)
    follow_up = await api.start_run(notebook_path=notebook.path, question=FOLLOW_UP, parent_run_id=parent)
    await api.watch(follow_up)

    replies = {
        fmt: await api.call("POST", "runs", follow_up, "export", body={"format": fmt, "notebook_path": notebook.path})
        for fmt in ("pdf", "markdown", "html")
    }

    stem = f"work/analysis-deepanalyze-{follow_up[:8]}"
    assert {fmt: (r.code, r.body.get("path")) for fmt, r in replies.items()} == {
        "pdf": (201, f"{stem}.pdf"),
        "markdown": (201, f"{stem}.md"),
        "html": (201, f"{stem}.html"),
    }
    pdf = PdfReader(jp_root_dir / f"{stem}.pdf")
    text = " ".join(" ".join(page.extract_text().split()) for page in pdf.pages)
    assert len(pdf.pages) >= 1
    assert "The total is 6." in text and "The double is 12." in text  # the whole conversation
    assert text.index("The total is 6.") < text.index("The double is 12.")
    markdown = (jp_root_dir / f"{stem}.md").read_text()
    assert "# Twice as much" in markdown and "[double.txt](double.txt)" in markdown
    assert "<html" in (jp_root_dir / f"{stem}.html").read_text()

    bad = await api.call("POST", "runs", follow_up, "export", body={"format": "docx", "notebook_path": notebook.path})
    outside = await api.call("POST", "runs", follow_up, "export", body={"format": "pdf", "notebook_path": "../x.ipynb"})
    assert bad.code == 400 and bad.body["message"] == "'format' must be one of html, pdf, markdown."
    assert outside.code == 400 and "outside the server root" in outside.body["message"]
