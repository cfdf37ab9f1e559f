"""KernelExecutor and KernelPool on real ipykernels."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from jupyter_client import AsyncKernelManager

from jupyter_deepanalyze.execution import DeadKernelError
from jupyter_deepanalyze.execution.kernel import KernelExecutor
from jupyter_deepanalyze.execution.pool import KernelPool
from jupyter_deepanalyze.feedback import FeedbackOptions
from jupyter_deepanalyze.outputs import (
    ClearOutputs,
    NewOutput,
    OutputAccumulator,
    OutputChange,
)


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds (checked every 50 ms), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


def shown_by_a_sink(changes: list[OutputChange]) -> list[dict]:
    """The outputs a sink shows after applying ``changes`` as NotebookBuilder does."""
    outputs = OutputAccumulator()
    for change in changes:
        if isinstance(change, ClearOutputs):
            outputs.clear(change.wait)
        elif change.update:
            assert change.display_id is not None
            outputs.update(change.display_id, change.output)
        else:
            outputs.add(change.output, display_id=change.display_id)
    return outputs.outputs


@pytest.fixture
async def executor(tmp_path: Path) -> AsyncIterator[KernelExecutor]:
    executor = await KernelExecutor.start(cwd=tmp_path)
    yield executor
    await executor.shutdown()


async def test_state_persists_between_blocks_and_counts_executions(executor: KernelExecutor) -> None:
    first = await executor.execute("x = 41\nprint('set')")
    second = await executor.execute("x + 1")
    assert (first.status, first.feedback, first.execution_count) == ("ok", "set\n", 1)
    assert second.execution_count == 2
    assert second.outputs == [
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}, "execution_count": 2}
    ]
    assert second.feedback == "42\n"


async def test_code_runs_in_the_working_directory(executor: KernelExecutor, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    result = await executor.execute("import pandas as pd\nprint(pd.read_csv('data.csv').shape)")
    assert result.feedback == "(1, 2)\n"


async def test_figures_are_png_outputs_and_placeholders_for_the_model(executor: KernelExecutor) -> None:
    seen: list[OutputChange] = []
    result = await executor.execute(
        "import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3), dpi=100)\nplt.plot([1, 2, 3])\nplt.show()",
        on_output=seen.append,
    )
    images = [o for o in result.outputs if o["output_type"] == "display_data" and "image/png" in o["data"]]
    assert len(images) == 1 and seen == [NewOutput(o) for o in result.outputs]
    assert result.feedback.startswith("[figure 1: ") and result.feedback.endswith(" PNG]\n")


async def test_errors_become_error_outputs_and_the_reference_error_form(executor: KernelExecutor) -> None:
    result = await executor.execute("print('before')\nitems = {}\nitems['missing']")
    assert result.status == "error"
    assert [o["output_type"] for o in result.outputs] == ["stream", "error"]
    assert result.feedback == (
        "before\n[Error]:\nTraceback (most recent call last):\n"
        '  File "<string>", line 3, in <module>\n'
        "    items['missing']\n"
        "KeyError: 'missing'"
    )
    assert "\x1b" not in result.feedback


async def test_the_error_line_is_the_blocks_own_line_when_a_function_fails(executor: KernelExecutor) -> None:
    result = await executor.execute("def f():\n    return 1 / 0\n\nf()")
    assert '  File "<string>", line 4, in <module>\n    f()\nZeroDivisionError: division by zero' in result.feedback


async def test_timeout_interrupts_and_the_kernel_keeps_its_state(executor: KernelExecutor) -> None:
    await executor.execute("kept = 'still here'")
    started = time.monotonic()
    result = await executor.execute("import time\nprint('working')\nwhile True:\n    time.sleep(0.05)", timeout=1.0)
    assert time.monotonic() - started < 5
    assert result.status == "timeout"
    assert result.feedback == "working\n[Timeout]: execution exceeded 1 seconds"
    after = await executor.execute("print(kept)")
    assert (after.status, after.feedback) == ("ok", "still here\n")


async def test_a_killed_kernel_is_reported_not_waited_for(executor: KernelExecutor) -> None:
    pid = executor.manager.provisioner.pid  # type: ignore[union-attr]

    def kill_once_running(change: OutputChange) -> None:
        os.kill(pid, signal.SIGKILL)

    started = time.monotonic()
    with pytest.raises(DeadKernelError, match="died"):
        await executor.execute("import time\nprint('running', flush=True)\ntime.sleep(60)", on_output=kill_once_running)
    assert time.monotonic() - started < 10


async def test_cancelling_an_execution_interrupts_the_kernel_and_keeps_what_it_showed(
    executor: KernelExecutor,
) -> None:
    changes: list[OutputChange] = []
    task = asyncio.create_task(
        executor.execute("print('started', flush=True)\nwhile True:\n    pass", on_output=changes.append)
    )
    await eventually(lambda: bool(changes))  # the code runs
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2
    shown = shown_by_a_sink(changes)
    assert shown[0] == {"output_type": "stream", "name": "stdout", "text": "started\n"}
    assert shown[-1]["output_type"] == "error" and shown[-1]["ename"] == "KeyboardInterrupt"
    assert (await executor.execute("print('alive')")).feedback == "alive\n"


async def test_executions_are_serialized(executor: KernelExecutor) -> None:
    slow = executor.execute("import time\ntime.sleep(0.5)\nprint('slow')")
    fast = executor.execute("print('fast')")
    results = await asyncio.gather(slow, fast)
    assert [r.feedback for r in results] == ["slow\n", "fast\n"]
    assert results[0].execution_count < results[1].execution_count


async def test_huge_output_keeps_its_head_and_tail_for_the_model_and_in_memory(tmp_path: Path) -> None:
    executor = await KernelExecutor.start(
        cwd=tmp_path, feedback=FeedbackOptions(limit=2000), max_stream_chars=100_000
    )
    try:
        changes: list[OutputChange] = []
        result = await executor.execute("for i in range(200000):\n    print(i)", on_output=changes.append)
    finally:
        await executor.shutdown()
    assert result.status == "ok"
    assert len(result.feedback) < 2100 and "characters omitted" in result.feedback
    (stream,) = result.outputs
    printed = "".join(f"{i}\n" for i in range(200000))
    head, note, tail = stream["text"].partition("\n[... ")
    assert printed.startswith(head) and len(head) == 50_000
    cut = len(printed) - 100_000
    assert note + tail.split("\n", 1)[0] + "\n" == f"\n[... {cut} characters of output cut here ...]\n"
    assert printed.endswith(tail.split("\n", 1)[1]) and len(tail.split("\n", 1)[1]) == 50_000
    assert result.feedback.endswith("199999\n")
    assert len(changes) < 200  # stream chunks are coalesced, not one event per print
    assert shown_by_a_sink(changes) == result.outputs


async def test_a_progress_loop_that_clears_its_output_leaves_only_its_last_step(
    executor: KernelExecutor, tmp_path: Path
) -> None:
    changes: list[OutputChange] = []

    def seen(change: OutputChange) -> None:  # each step waits until a sink got the one before
        changes.append(change)
        (tmp_path / f"seen-{len(changes)}").touch()

    result = await executor.execute(
        "import os, time\nfrom IPython.display import clear_output, display\n"
        "def seen():\n    return len([f for f in os.listdir() if f.startswith('seen-')])\n"
        "for i in range(4):\n    before = seen()\n    clear_output(wait=True)\n    print(f'step {i}')\n"
        "    display({'text/plain': f'bar {i}'}, raw=True)\n"
        "    while seen() == before:\n        time.sleep(0.01)\n",
        on_output=seen,
    )
    assert result.outputs == [
        {"output_type": "stream", "name": "stdout", "text": "step 3\n"},
        {"output_type": "display_data", "data": {"text/plain": "bar 3"}, "metadata": {}},
    ]
    assert result.feedback == "step 3\nbar 3\n"  # the model is told what is left, not every step
    assert ClearOutputs() in changes  # sinks saw the loop redraw (each sync is a clear + what is new)
    assert shown_by_a_sink(changes) == result.outputs


async def test_display_updates_replace_the_display_in_this_block_and_in_earlier_ones(
    executor: KernelExecutor,
) -> None:
    first_changes: list[OutputChange] = []
    first = await executor.execute(
        "from IPython.display import display\nh = display('one', display_id=True)\nprint('between')\n"
        "h.update('two')",
        on_output=first_changes.append,
    )
    assert [o.get("data", {}).get("text/plain", o.get("text")) for o in first.outputs] == ["'two'", "between\n"]
    assert first.feedback == "'two'\nbetween\n"
    assert shown_by_a_sink(first_changes) == first.outputs
    later: list[OutputChange] = []
    second = await executor.execute("h.update('three')", on_output=later.append)
    assert second.outputs == [] and second.feedback == ""
    (update,) = later
    assert update.update and update.display_id == next(c.display_id for c in first_changes if c.display_id)
    assert update.output["data"] == {"text/plain": "'three'"}


async def test_execute_silent_leaves_history_and_count_alone(executor: KernelExecutor) -> None:
    await executor.execute("a = 1")
    reply = await executor.execute_silent("b = 2", user_expressions={"v": "a + b"})
    assert reply["user_expressions"]["v"]["data"]["text/plain"] == "3"
    assert (await executor.execute("a")).execution_count == 2


async def test_attaching_to_a_running_kernel_uses_its_namespace(tmp_path: Path) -> None:
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel(cwd=str(tmp_path))
    try:
        owner = manager.client()
        owner.start_channels()
        await owner.wait_for_ready(timeout=30)
        owner.execute("df_rows = 2000")
        await owner.get_shell_msg(timeout=10)
        attached = await KernelExecutor.attach(manager.get_connection_info())
        try:
            result = await attached.execute("print(df_rows)")
            assert result.feedback == "2000\n"
            task = asyncio.create_task(attached.execute("while True:\n    pass", timeout=1.0))
            assert (await task).status == "timeout"  # interrupt_request on the control channel
            assert (await attached.execute("print('ok')")).feedback == "ok\n"
        finally:
            await attached.shutdown()
        assert await manager.is_alive()  # attaching never shuts the user's kernel down
        owner.stop_channels()
    finally:
        await manager.shutdown_kernel(now=True)


async def test_attaching_cancelled_while_the_kernel_is_busy_leaves_no_client_running(
    executor: KernelExecutor,
) -> None:
    busy = executor.client.execute("import time\ntime.sleep(3)")  # kernel_info waits behind it
    while True:  # until the kernel says it is busy with that
        msg = await executor.client.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == busy and msg["content"].get("execution_state") == "busy":
            break
    threads = threading.active_count()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(KernelExecutor.attach(executor.manager.get_connection_info()), 0.5)
    await eventually(lambda: threading.active_count() == threads, timeout=2.0)  # the heartbeat thread stopped


async def test_pool_gives_each_task_its_own_folder_and_a_clean_namespace(simpson_csv: Path) -> None:
    async with KernelPool(1) as pool:
        async with pool.session([simpson_csv], name="first") as kernel:
            assert [f.name for f in kernel.files] == ["Simpson.csv"]
            result = await kernel.executor.execute(
                "import os, pandas as pd\nleft = 'behind'\nprint(os.path.basename(os.getcwd()), pd.read_csv('Simpson.csv').shape)"
            )
            assert result.feedback == "first (2000, 5)\n"
            await kernel.executor.execute("open('Simpson.csv', 'w').write('overwritten')")
            workdir = kernel.workdir
        assert not workdir.exists()
        assert simpson_csv.read_text().startswith("dept,")  # the original is untouched
        async with pool.session([], name="second") as kernel:
            result = await kernel.executor.execute("print(os.getcwd().endswith('second'), 'left' in dir())")
            assert result.status == "error"  # `os` is gone: the namespace was reset
            result = await kernel.executor.execute("import os\nprint(os.getcwd().endswith('second'), 'left' in dir())")
            assert result.feedback == "True False\n"
            assert result.execution_count == 2


async def test_pool_replaces_a_kernel_that_died() -> None:
    async with KernelPool(1) as pool:
        async with pool.session() as kernel:
            pid = kernel.executor.manager.provisioner.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(DeadKernelError):
                await kernel.executor.execute("import time\ntime.sleep(30)")
        async with pool.session() as kernel:
            assert (await kernel.executor.execute("print('fresh')")).feedback == "fresh\n"


async def test_pooled_reset_clears_variables_but_keeps_the_folder() -> None:
    async with KernelPool(1) as pool:
        async with pool.session(name="stateless") as kernel:
            await kernel.executor.execute("v = 1")
            await kernel.reset()
            result = await kernel.executor.execute("import os\nprint('v' in dir(), os.path.basename(os.getcwd()))")
            assert result.feedback == "False stateless\n"
