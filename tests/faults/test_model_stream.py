"""Faults of the model server's stream: cut mid-token, reset, stalled, junk, gone; hostile
text (a lone surrogate, a megabyte of it). A turn that did not finish runs no code."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_deepanalyze.eval.scripted_server import Fault
from jupyter_deepanalyze.protocol import SegmentParser

from ..scripted_llm import ScriptedLLM
from .checks import RunChecks, of_type

HALF_SCRIPT = (
    "<Analyze>\nWrite the results file.\n</Analyze>\n<Code>\n```python\n"
    "with open('half.txt', 'w') as out:\n    out.write('started')\n"
    "    out.write(' and finished')\nprint('wrote half.txt')\n```\n</Code>"
)
CUT_IN_CODE = HALF_SCRIPT.index("out.write(' and")  # the block is half-written there
ANSWER = "<Answer>\n# Report\n\nDone.\n</Answer>"
WHAT_HAPPENED = {
    "close": "closed the connection mid-answer.",
    "reset": "reset the connection mid-answer.",
    "junk": "closed the connection mid-answer.",
    "stall": "stopped sending mid-answer (no data for 1 s).",
}


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    """The scripted model, with room for a megabyte-sized conversation."""
    with ScriptedLLM([], max_model_len=4_000_000) as server:
        yield server


@pytest.fixture
def jp_server_config(jp_server_config: Config) -> Config:
    jp_server_config.DeepAnalyze.request_timeout = 1.0  # a stalled stream is given up on after 1 s
    return jp_server_config


@pytest.mark.parametrize("kind", ["close", "reset", "junk", "stall"])
async def test_a_turn_cut_off_mid_code_runs_nothing_and_is_asked_for_again(
    kind: str, api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks, jp_root_dir: Path
) -> None:
    release = threading.Event()
    llm.turns.extend([Fault(HALF_SCRIPT, CUT_IN_CODE, kind, release=release, stall_seconds=10), ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path)
    try:
        events = await checks.finished(run_id, "completed")
    finally:
        release.set()
    assert not (jp_root_dir / "work" / "half.txt").exists()  # the half-written block never ran
    assert of_type(events, "execution_finished") == []
    notice = (
        f"*The model server at {llm.url} {WHAT_HAPPENED[kind]} What it sent is not used: "
        "the model is asked again.*"
    )
    cells = of_type(events, "cell")
    assert notice in [c["source"] for c in cells]
    assert cells[-1]["source"] == "# Report\n\nDone."
    assert llm.requests[1]["messages"] == llm.requests[0]["messages"]  # the same turn, asked again
    # The unfinished code step was closed for the chat view, and never became a cell. (A reset
    # may drop what was in flight: then no code step streamed at all.)
    code_steps = [s["text"] for s in of_type(events, "segment") if s["tag"] == "Code"]
    assert code_steps == [] if kind == "reset" and not code_steps else len(code_steps) == 1
    assert all("finished" not in text for text in code_steps)
    if kind != "reset":
        assert "out.write('started')" in code_steps[0]
    assert not [c for c in cells if c["cell_type"] == "code"]


async def test_a_stream_cut_off_twice_fails_the_run_saying_so(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks, jp_root_dir: Path
) -> None:
    llm.turns.extend([Fault(HALF_SCRIPT, CUT_IN_CODE), Fault(HALF_SCRIPT, CUT_IN_CODE)])
    run_id = await api.start_run(notebook_path=notebook.path)
    error = (
        f"The model server at {llm.url} closed the connection mid-answer. "
        "It broke off twice; none of the cut-off code was run."
    )
    events = await checks.finished(run_id, "failed", error)
    assert not (jp_root_dir / "work" / "half.txt").exists()
    assert of_type(events, "execution_finished") == []
    assert "vllm serve" not in error and "--model" not in error


async def test_a_truncated_answer_does_not_complete_the_run(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    truncated = "<Answer>\n# Report\n\nSales fell by"
    llm.turns.extend([Fault(truncated, len(truncated) - 3), ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path)
    events = await checks.finished(run_id, "completed")
    reports = [c for c in of_type(events, "cell") if c["metadata"]["deepanalyze"]["role"] == "report"]
    assert [r["source"] for r in reports] == ["# Report\n\nDone."]  # only the finished answer
    assert events[-1]["report_cell_id"] == reports[0]["cell_id"]


async def test_a_model_server_that_dies_mid_answer_is_named_as_such(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    def cut_and_die(body: dict[str, Any]) -> Fault:
        llm.stop()  # it listens no more; this answer, already under way, breaks off
        return Fault(HALF_SCRIPT, CUT_IN_CODE)

    llm.turns.append(cut_and_die)  # type: ignore[arg-type]
    run_id = await api.start_run(notebook_path=notebook.path)
    error = f"The model server at {llm.url} closed the connection mid-answer. Asked again, it did not answer."
    await checks.finished(run_id, "failed", error)


async def test_a_lone_surrogate_in_the_model_text_is_replaced_and_the_run_ends_cleanly(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    llm.turns.append("<Answer>\nbroken \ud800 text\n</Answer>")
    run_id = await api.start_run(notebook_path=notebook.path)
    events = await checks.finished(run_id, "completed")  # its log has the end record
    assert of_type(events, "cell")[-1]["source"] == "broken \ufffd text"


class LoopWatch:
    """The longest the event loop went without running this task's wakeup (a measurement)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, loop.time() - before - 0.005)

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.ensure_future(self._watch())
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_a_megabyte_of_model_text_neither_stalls_the_server_nor_takes_long(
    api: Any, notebook: Any, llm: ScriptedLLM, checks: RunChecks
) -> None:
    megabyte = "word " * 200_000
    llm.turns.extend([megabyte, f"<Analyze>{megabyte}</Analyze>", ANSWER])  # in 7-character chunks
    started = time.monotonic()
    with LoopWatch() as watch:
        run_id = await api.start_run(notebook_path=notebook.path)
        events = await checks.finished(run_id, "completed")
    # Generous bounds that a quadratic parser (170 s for the first megabyte) cannot meet;
    # the figures themselves come from `python -m jupyter_deepanalyze.eval.bench_trust`.
    assert time.monotonic() - started < 30
    assert watch.worst < 1.0
    notes = [c for c in of_type(events, "cell") if c["metadata"]["deepanalyze"]["role"] == "note"]
    assert [len(n["source"]) for n in notes] == [len(megabyte.strip())]


def test_the_segment_parser_is_linear_in_the_text() -> None:
    for text in ("word " * 200_000, "<Analyze>" + "word " * 200_000 + "</Analyze>", "<Code>x<y\n" * 100_000):
        parser = SegmentParser()
        started = time.perf_counter()
        for i in range(0, len(text), 7):
            parser.feed(text[i : i + 7])
        parser.close()
        assert time.perf_counter() - started < 10  # well under: about 0.3 s here
