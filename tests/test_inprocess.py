"""InProcessExecutor on a real IPython shell in this process, and the variables describer.

The feedback the model gets must be the text ``KernelExecutor`` produces for the same
code: the parity test runs the same blocks through both.
"""

from __future__ import annotations

import asyncio
import builtins
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from IPython.core.interactiveshell import InteractiveShell

from jupyter_deepanalyze.execution import ExecutionResult
from jupyter_deepanalyze.execution.inprocess import InProcessExecutor, ShellThreadQueue
from jupyter_deepanalyze.execution.kernel import KernelExecutor
from jupyter_deepanalyze.outputs import NewOutput, OutputChange
from jupyter_deepanalyze.protocol import VariableInfo, build_first_message
from jupyter_deepanalyze.variables import describe_value, summarize_namespace

INLINE = "module://matplotlib_inline.backend_inline"


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    import matplotlib.pyplot as plt
    from matplotlib_inline.backend_inline import configure_inline_support

    shell = InteractiveShell.instance()
    # The inline backend, as in a kernel: figures shown as PNG at the end of each block.
    plt.switch_backend(INLINE)
    configure_inline_support(shell, INLINE)
    yield shell


@pytest.fixture
def executor(shell: InteractiveShell) -> InProcessExecutor:
    shell.reset(new_session=False)
    return InProcessExecutor(shell)


def hooks(shell: InteractiveShell) -> tuple[Any, ...]:
    return (
        sys.stdout,
        sys.stderr,
        sys.displayhook,
        shell.display_pub,
        shell.display_trap.hook,
        builtins.input,
        "_showtraceback" in vars(shell),
    )


# ------------------------------------------------------------------------ behaviour


async def test_code_runs_in_the_shells_namespace_and_keeps_its_state(
    shell: InteractiveShell, executor: InProcessExecutor
) -> None:
    shell.user_ns["df"] = pd.DataFrame({"v": [1, 2, 3]})
    first = await executor.execute("total = int(df['v'].sum())\nprint('set')")
    second = await executor.execute("total + 1")
    assert (first.status, first.feedback) == ("ok", "set\n")
    assert shell.user_ns["total"] == 6
    assert second.outputs == [
        {
            "output_type": "execute_result",
            "data": {"text/plain": "7"},
            "metadata": {},
            "execution_count": None,
        }
    ]


async def test_outputs_are_captured_in_order_and_nothing_leaks_to_the_terminal(
    executor: InProcessExecutor, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[OutputChange] = []
    result = await executor.execute(
        "import sys\nfrom IPython.display import display, Markdown\nprint('one')\nprint('two', file=sys.stderr)\n"
        "display(Markdown('**three**'))\nprint('four')\n'five'",
        on_output=seen.append,
    )
    assert [(o["output_type"], o.get("name")) for o in result.outputs] == [
        ("stream", "stdout"),
        ("stream", "stderr"),
        ("display_data", None),
        ("stream", "stdout"),
        ("execute_result", None),
    ]
    assert result.outputs[2]["data"]["text/markdown"] == "**three**"
    assert seen == [NewOutput(o) for o in result.outputs]
    assert result.feedback == "one\n<IPython.core.display.Markdown object>\nfour\n'five'\ntwo\n"
    assert capsys.readouterr() == ("", "")


async def test_a_trailing_semicolon_hides_the_value_and_clear_output_clears(
    executor: InProcessExecutor,
) -> None:
    quiet = await executor.execute("40 + 2;")
    cleared = await executor.execute(
        "from IPython.display import clear_output, display\nprint('gone')\nclear_output(wait=True)\n"
        "h = display('first', display_id=True)\nh.update('second')"
    )
    assert quiet.outputs == []
    assert [o["data"]["text/plain"] for o in cleared.outputs] == ["'second'"]
    assert cleared.feedback == "'second'\n"


async def test_a_display_of_an_earlier_block_is_updated_through_the_sinks(executor: InProcessExecutor) -> None:
    first: list[OutputChange] = []
    await executor.execute(
        "from IPython.display import display\nh = display('one', display_id=True)", on_output=first.append
    )
    later: list[OutputChange] = []
    result = await executor.execute("h.update('two')", on_output=later.append)
    (shown,) = first
    assert isinstance(shown, NewOutput) and shown.display_id and not shown.update
    assert result.outputs == [] and result.feedback == ""
    assert later == [
        NewOutput({"output_type": "display_data", "data": {"text/plain": "'two'"}, "metadata": {}},
                  display_id=shown.display_id, update=True)
    ]


async def test_model_code_leaves_history_counter_and_underscore_alone(
    shell: InteractiveShell, executor: InProcessExecutor
) -> None:
    shell.run_cell("'user value'", store_history=True)
    count, history = shell.execution_count, len(shell.user_ns["In"])
    await executor.execute("'model value'")
    await executor.execute("1 / 0")
    assert (shell.execution_count, len(shell.user_ns["In"])) == (count, history)
    assert shell.user_ns["_"] == "user value"


async def test_hooks_are_restored_after_errors_and_timeouts(
    shell: InteractiveShell, executor: InProcessExecutor
) -> None:
    before = hooks(shell)
    await executor.execute("raise RuntimeError('boom')")
    await executor.execute("x = (\n1")
    await executor.execute("while True:\n    pass", timeout=0.5)
    assert hooks(shell) == before


async def test_input_is_refused_as_in_the_kernel_executor(executor: InProcessExecutor) -> None:
    result = await executor.execute("name = input('name? ')")
    assert result.status == "error"
    assert result.feedback.endswith(
        "StdinNotImplementedError: input() is not available to code the agent runs"
    )


async def test_a_timeout_interrupts_busy_and_blocked_code_and_the_state_survives(
    shell: InteractiveShell, executor: InProcessExecutor
) -> None:
    await executor.execute("kept = 'still here'")
    started = time.monotonic()
    busy = await executor.execute(
        "import time\nprint('working')\nwhile True:\n    time.sleep(0.05)", timeout=1.0
    )
    blocked = await executor.execute("time.sleep(60)", timeout=1.0)
    assert time.monotonic() - started < 15
    assert (busy.status, busy.feedback) == ("timeout", "working\n[Timeout]: execution exceeded 1 seconds")
    assert (blocked.status, blocked.feedback) == ("timeout", "[Timeout]: execution exceeded 1 seconds")
    after = await executor.execute("print(kept)")
    assert (after.status, after.feedback) == ("ok", "still here\n")


async def test_figures_of_a_non_inline_backend_become_png_outputs(shell: InteractiveShell) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    plt.switch_backend("agg")
    try:
        executor = InProcessExecutor(shell)
        result = await executor.execute(
            "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3), dpi=50)\n"
            "ax.plot([1, 3, 2])\nprint('drawn')"
        )
    finally:
        plt.switch_backend(backend)
    images = [o for o in result.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 and images[0]["data"]["text/plain"].startswith("<Figure size")
    assert result.feedback.startswith("drawn\n[figure 1: ") and result.feedback.endswith(" PNG]\n")
    assert plt.get_fignums() == []  # closed: nothing left for a later cell to show


# Blocks whose feedback must be identical in a kernel and in-process (PROTOCOL.md,
# "What the model sees of an execution").
PARITY_BLOCKS = [
    "x = 41\nprint('set')",
    "x + 1",
    "print('before')\nitems = {}\nitems['missing']",
    "def f():\n    return 1 / 0\n\nf()",
    "values = [1,\n  2,\n  3]\nvalues.append(\n",
    "y = (\n1",
    "import sys\nprint('out')\nprint('err', file=sys.stderr)\nprint('more')",
    "from IPython.display import display, Markdown\ndisplay(Markdown('**hi**'))\nx * 2",
    "undefined_name + 1",
    "print('a' * 5)\nraise ValueError('bad\\nthing')",
    "42;",
    "import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3), dpi=100)\nplt.plot([1, 2, 3])\nplt.show()",
    "for i in range(3):\n    print(i)\n    if i == 2:\n        int('three')",
    "from IPython.display import clear_output\nfor i in range(3):\n    clear_output(wait=True)\n    print(f'step {i}')",
    "h = display('one', display_id=True)\nprint('between')\nh.update('two')",
]


def rich_kinds(result: ExecutionResult) -> list[str]:
    return [o["output_type"] for o in result.outputs if o["output_type"] != "stream"]


async def test_feedback_is_the_same_as_the_kernel_executors_for_the_same_blocks(
    executor: InProcessExecutor, tmp_path: Path
) -> None:
    kernel = await KernelExecutor.start(cwd=tmp_path)
    try:
        for code in PARITY_BLOCKS:
            in_kernel = await kernel.execute(code)
            in_process = await executor.execute(code)
            assert (in_process.status, in_process.feedback) == (in_kernel.status, in_kernel.feedback), code
            # The kernel buffers stdout and stderr apart (it may group their chunks
            # differently); rich outputs and errors come in the same order.
            assert rich_kinds(in_process) == rich_kinds(in_kernel), code
    finally:
        await kernel.shutdown()


# ------------------------------------------------------------------- other threads


def pump_until_done(queue: ShellThreadQueue, work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``work`` on an asyncio loop in a worker thread while this (the shell's) thread pumps."""
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = asyncio.run(work())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 60
    while thread.is_alive() and time.monotonic() < deadline:
        queue.pump(0.05)
    thread.join(1)
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_blocks_awaited_on_another_thread_run_on_the_shells_thread(shell: InteractiveShell) -> None:
    queue = ShellThreadQueue()
    executor = InProcessExecutor(shell, queue=queue)

    async def work() -> list[ExecutionResult]:
        return [
            await executor.execute("import threading\nran_on = threading.get_ident()\nprint('hello')"),
            await executor.execute("ran_on"),
        ]

    first, second = pump_until_done(queue, work)
    assert (first.status, first.feedback) == ("ok", "hello\n")
    assert shell.user_ns["ran_on"] == threading.get_ident()
    assert second.feedback == f"{threading.get_ident()}\n"


def test_cancelling_the_waiting_task_interrupts_the_block_and_keeps_its_outputs(
    shell: InteractiveShell,
) -> None:
    queue = ShellThreadQueue()
    executor = InProcessExecutor(shell, queue=queue)
    seen: list[OutputChange] = []
    started = threading.Event()
    shell.user_ns["started"] = started

    async def work() -> tuple[bool, ExecutionResult]:
        task = asyncio.ensure_future(
            executor.execute(
                "import time\nprint('started')\nstarted.set()\nwhile True:\n    time.sleep(0.05)",
                on_output=seen.append,
            )
        )
        assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
        task.cancel()
        try:
            await task
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        return cancelled, await executor.execute("print('next')")

    cancelled, after = pump_until_done(queue, work)
    assert cancelled
    outputs = [change.output for change in seen if isinstance(change, NewOutput)]
    assert [o["output_type"] for o in outputs] == ["stream", "error"]
    assert outputs[0]["text"] == "started\n" and outputs[1]["ename"] == "KeyboardInterrupt"
    assert after.feedback == "next\n"


def test_a_users_interrupt_ends_the_block_interrupted_and_is_reported(shell: InteractiveShell) -> None:
    interrupts: list[int] = []
    executor = InProcessExecutor(shell, on_interrupt=lambda: interrupts.append(1))
    started = threading.Event()
    shell.user_ns["started"] = started
    main = threading.get_ident()

    def press_ctrl_c() -> None:
        started.wait(30)  # the block is running
        signal.pthread_kill(main, signal.SIGINT)  # what Ctrl-C / a kernel interrupt does

    threading.Thread(target=press_ctrl_c).start()
    result = asyncio.run(executor.execute("import time\nstarted.set()\nwhile True:\n    time.sleep(0.05)"))
    assert result.status == "interrupted"
    assert result.error is not None and result.error.ename == "KeyboardInterrupt"
    assert interrupts == [1]


# ----------------------------------------------------------------------- variables


def test_dataframes_series_and_arrays_are_described_with_shape_and_dtypes() -> None:
    frame = pd.DataFrame({"region": ["n", "s"], "sales": [1.5, 2.0], "units": [3, 4]})
    assert describe_value("df", frame) == VariableInfo(
        "df",
        "pandas.DataFrame",
        (2, 3),
        (("region", str(frame["region"].dtype)), ("sales", "float64"), ("units", "int64")),
        int(frame.memory_usage().sum()),
    )
    series = describe_value("s", frame["sales"])
    assert series is not None and (series.type, series.shape, series.columns) == (
        "pandas.Series",
        (2,),
        (("sales", "float64"),),
    )
    array = describe_value("a", np.zeros((3, 4), dtype="float32"))
    assert array == VariableInfo("a", "numpy.ndarray[float32]", (3, 4), (), 48)
    records = describe_value("r", np.zeros(2, dtype=[("x", "i4"), ("y", "f8")]))
    assert records is not None and records.columns == (("x", "int32"), ("y", "float64"))
    polars = describe_value("p", pl.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert polars is not None and (polars.type, polars.shape, polars.columns) == (
        "polars.DataFrame",
        (2, 2),
        (("a", "Int64"), ("b", "String")),
    )
    assert describe_value("n", 3) is None and describe_value("m", pd) is None


def test_a_described_dataframe_reaches_the_first_message() -> None:
    info = describe_value("df", pd.DataFrame({"sales": [1, 2]}))
    assert info is not None
    message = build_first_message("Sum the sales.", variables=[info])
    assert '"name": "df"' in message and '"shape": [\n        2,\n        1\n    ]' in message
    assert "sales (int64)" in message


def test_namespace_summary_lists_data_variables_only_sorted_and_bounded() -> None:
    wide = pd.DataFrame(np.zeros((1, 300)))
    namespace = {"zeta": np.arange(3), "alpha": wide, "_hidden": wide, "In": [], "n": 5, "text": "x", "kept": wide}
    rows = summarize_namespace(namespace, limit=10, max_columns=5, hidden={"kept"})
    assert [r["name"] for r in rows] == ["alpha", "zeta"]
    assert rows[0]["type"] == "pandas.DataFrame" and rows[0]["shape"] == [1, 300]
    assert len(rows[0]["columns"]) == 5 and rows[0]["column_count"] == 300
    assert rows[1] == {
        "name": "zeta",
        "type": "numpy.ndarray",
        "shape": [3],
        "columns": [],
        "column_count": 0,
        "memory_bytes": 24,
        "dtype": "int64",
    }
    assert [r["name"] for r in summarize_namespace(namespace, limit=1)] == ["alpha"]
