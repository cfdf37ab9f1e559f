"""Files the model's code wrote: ``artifacts`` events and the report's Files list.

The kernel lists its own folder (a silent execution) before and after each block; a real
kernel here, one on a real Jupyter Kernel Gateway (its folder on the kernel's side), and
the magic's in-process executor in ``test_magics``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jupyter_deepanalyze.agent import Task
from jupyter_deepanalyze.artifacts import Artifact, files_section
from jupyter_deepanalyze.events import Artifacts, CellCreated, Event
from jupyter_deepanalyze.execution import snapshots
from jupyter_deepanalyze.execution.kernel import KernelExecutor
from jupyter_deepanalyze.execution.snapshots import FolderSnapshot, changed_files

from .scripted_llm import ScriptedLLM, run_agent


def code_turn(code: str) -> str:
    return f"<Analyze>\nWrite files.\n</Analyze>\n<Code>\n```python\n{code}\n```\n</Code>"


WRITE = """import pandas as pd
pd.DataFrame({'a': [1, 2]}).to_csv('table.csv', index=False)
with open('data.csv', 'a') as f:
    f.write('3,4\\n')
import os
os.makedirs('out/deep', exist_ok=True)
open('out/summary.md', 'w').write('# summary\\n')
open('my report.txt', 'w').write('spaces in the name')"""
SKIPPED = """import os
open('.hidden', 'w').write('x')
os.makedirs('__pycache__', exist_ok=True)
open('__pycache__/m.cpython-311.pyc', 'wb').write(b'x')
os.makedirs('.ipynb_checkpoints', exist_ok=True)
open('.ipynb_checkpoints/n-checkpoint.ipynb', 'w').write('{}')
open('notebook.ipynb', 'w').write('{}')
os.makedirs('a/b/c/d', exist_ok=True)
open('a/b/c/d/too_deep.txt', 'w').write('x')
print('nothing to report')"""
ANSWER = "<Answer>\n# Done\n\nSee the table.\n</Answer>"


@pytest.fixture
async def executor(tmp_path: Path) -> AsyncIterator[KernelExecutor]:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    executor = await KernelExecutor.start(cwd=tmp_path)
    yield executor
    await executor.shutdown()


async def run(llm: ScriptedLLM, executor, **options) -> list[Event]:
    _, events = await run_agent(llm, executor, Task("Write files."), **options)
    return events


async def test_files_a_block_creates_or_modifies_are_reported_and_linked_from_the_report(
    scripted_llm, executor: KernelExecutor, tmp_path: Path
) -> None:
    llm = scripted_llm([code_turn(WRITE), code_turn(SKIPPED), code_turn("print('no files')"), ANSWER])

    events = await run(llm, executor, file_links="run_files/")

    reported = [e for e in events if isinstance(e, Artifacts)]
    assert len(reported) == 1  # the blocks that wrote nothing worth listing say nothing
    size = lambda name: (tmp_path / name).stat().st_size  # noqa: E731
    assert reported[0].files == [
        {"path": "data.csv", "size": size("data.csv"), "status": "modified"},
        {"path": "my report.txt", "size": 18, "status": "created"},
        {"path": "out/summary.md", "size": 10, "status": "created"},
        {"path": "table.csv", "size": size("table.csv"), "status": "created"},
    ]
    code_cell = next(e for e in events if isinstance(e, CellCreated) and e.cell_type == "code")
    assert reported[0].step == code_cell.metadata["deepanalyze"]["step"]
    report = next(e for e in events if isinstance(e, CellCreated) and e.metadata["deepanalyze"]["role"] == "report")
    assert report.source == (
        "# Done\n\nSee the table.\n\n**Files**\n\n"
        f"- [data.csv](run_files/data.csv) ({size('data.csv')} B, modified)\n"
        "- [my report.txt](run_files/my%20report.txt) (18 B, created)\n"
        "- [out/summary.md](run_files/out/summary.md) (10 B, created)\n"
        f"- [table.csv](run_files/table.csv) ({size('table.csv')} B, created)"
    )
    # Nothing of the listing reached the user's namespace.
    namespace = await executor.execute("print(sorted(k for k in dir() if 'snapshot' in k or 'scope' in k))")
    assert namespace.feedback == "[]\n"


async def test_listings_are_bounded_and_a_partial_one_still_finds_new_files(
    scripted_llm, executor: KernelExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(30):
        (tmp_path / f"old{index:02d}.txt").write_text("x")
    monkeypatch.setattr(snapshots, "MAX_FILES", 10)  # the listing stops at 10 files
    partial = await executor.snapshot_files()
    assert partial is not None and not partial.complete and len(partial.files) == 10
    many = "for i in range(150):\n    open(f'new{i:03d}.txt', 'w').write('y')"
    monkeypatch.setattr(snapshots, "MAX_FILES", 1000)
    llm = scripted_llm([code_turn(many), ANSWER])

    events = await run(llm, executor)

    (reported,) = [e for e in events if isinstance(e, Artifacts)]
    assert [f["path"] for f in reported.files] == [f"new{i:03d}.txt" for i in range(snapshots.MAX_LISTED)]
    # Before a partial listing, a file missing from it is new only if written after it.
    after = await executor.snapshot_files()
    assert after is not None
    unseen = FolderSnapshot(partial.folder, partial.taken, partial.files, complete=False)
    assert {a.path for a in changed_files(unseen, after, limit=1000)} == {f"new{i:03d}.txt" for i in range(150)}


async def test_a_kernel_on_a_gateway_lists_its_own_folder(scripted_llm, kernel_gateway) -> None:
    executor = await KernelExecutor.start_on_gateway(kernel_gateway.endpoint)
    try:
        llm = scripted_llm([code_turn("open('remote.txt', 'w').write('made on the kernel side')"), ANSWER])
        events = await run(llm, executor)
        listing = await executor.snapshot_files()
    finally:
        await executor.shutdown()

    (reported,) = [e for e in events if isinstance(e, Artifacts)]
    assert reported.files == [{"path": "remote.txt", "size": 23, "status": "created"}]
    assert listing is not None
    assert Path(listing.folder).resolve().is_relative_to(kernel_gateway.kernel_side.resolve())
    assert os.path.exists(Path(listing.folder) / "remote.txt")


async def test_tracking_can_be_switched_off(scripted_llm, executor: KernelExecutor) -> None:
    llm = scripted_llm([code_turn("open('x.txt', 'w').write('x')"), ANSWER])

    events = await run(llm, executor, track_files=False)

    assert not [e for e in events if isinstance(e, Artifacts)]
    assert "**Files**" not in next(e.source for e in events if isinstance(e, CellCreated) and "Done" in e.source)


def test_the_files_list_escapes_brackets_and_sizes_read_as_people_write_them() -> None:
    files = [Artifact("a [1].png", 2048, "created"), Artifact("big.parquet", 5 * 1024 * 1024, "modified")]

    assert files_section(files, "") == (
        "**Files**\n\n- [a \\[1\\].png](a%20%5B1%5D.png) (2.0 KB, created)\n"
        "- [big.parquet](big.parquet) (5.0 MB, modified)"
    )
    assert files_section([]) == ""
