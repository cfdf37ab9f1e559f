"""One event contract in both languages: the golden run, from the Python side.

``generate.py`` records two scripted runs (real agent, scripted model server, real
kernel) into ``run-events.jsonl`` and builds ``run-notebook.ipynb`` from them. Here:
recording again gives the committed files, ``NotebookBuilder`` turns the committed events
into the committed notebook, and the runs cover every event type, cell role and kind of
output. ``labextension/test/golden.spec.ts`` holds the frontend's materializer to the same
two files.
"""

from __future__ import annotations

from collections import Counter

import nbformat

from jupyter_deepanalyze.events import CELL_ROLES, EVENT_TYPES, from_json
from jupyter_deepanalyze.notebook import NotebookBuilder

from .generate import NOTEBOOK_FILE, RUN_ID, SECOND_RUN_ID, build_notebook, read_events, record


async def test_recording_the_golden_runs_again_gives_the_committed_events_and_notebook() -> None:
    events = await record()

    assert events == read_events(), "the golden run changed: review it, then `python -m tests.golden.generate`"
    assert build_notebook(events) == nbformat.read(NOTEBOOK_FILE, as_version=4)


def test_notebook_builder_turns_the_golden_events_into_the_golden_notebook() -> None:
    golden = nbformat.read(NOTEBOOK_FILE, as_version=4)

    built = build_notebook(read_events())

    nbformat.validate(built)
    assert built.cells == golden.cells
    assert built == golden


def test_replaying_the_golden_runs_onto_their_notebook_adopts_the_cells_and_rebuilds_their_outputs() -> None:
    golden = nbformat.read(NOTEBOOK_FILE, as_version=4)
    user_cell = nbformat.v4.new_code_cell("x = 1", id="da-901de00000000000-2")  # not the run's: same id
    elsewhere = nbformat.read(NOTEBOOK_FILE, as_version=4)
    elsewhere.cells.insert(0, user_cell)

    replayed = NotebookBuilder(nbformat.read(NOTEBOOK_FILE, as_version=4)).apply_all(read_events())
    beside_a_user_cell = NotebookBuilder(elsewhere).apply_all(read_events())

    assert replayed == golden  # outputs rebuilt, not appended a second time
    assert beside_a_user_cell.cells[0] == nbformat.v4.new_code_cell("x = 1", id="da-901de00000000000-2")


def test_the_golden_runs_cover_every_event_type_cell_role_and_output_kind() -> None:
    events = read_events()
    assert all(from_json(event).to_json() == event for event in events)  # the contract's own shape
    assert [e["run_id"] for e in events if e["type"] == "run_started"] == [RUN_ID, SECOND_RUN_ID]

    assert set(EVENT_TYPES) == {e["type"] for e in events}
    (started,) = [e for e in events if e["type"] == "run_started" and e["run_id"] == SECOND_RUN_ID]
    assert started["parent_run_id"] == RUN_ID  # the second run follows the first up
    (artifacts,) = [e for e in events if e["type"] == "artifacts"]
    assert [f["path"] for f in artifacts["files"]] == ["success_by_dept.png"]
    report = next(e for e in events if e["type"] == "cell" and e["metadata"]["deepanalyze"]["role"] == "report")
    assert "**Files**\n\n- [success_by_dept.png](success_by_dept.png) (" in report["source"]

    roles = {e["metadata"]["deepanalyze"]["role"] for e in events if e["type"] == "cell"}
    assert roles == set(CELL_ROLES)
    outputs = Counter(e["output"]["output_type"] for e in events if e["type"] == "output")
    assert set(outputs) == {"stream", "display_data", "execute_result", "error"}
    assert any("image/png" in e["output"].get("data", {}) for e in events if e["type"] == "output")

    finished = [e for e in events if e["type"] == "execution_finished"]
    assert {e["status"] for e in finished} == {"ok", "error", "skipped"}
    assert any(e["code"] for e in finished), "no approval ran the user's edit"
    assert [e["status"] for e in events if e["type"] == "run_finished"] == ["completed", "max_rounds"]
    assert sum(e["type"] == "approval_required" for e in events) == 5
