"""The variables endpoint: a silent look at the kernel's data that leaves no trace."""

from __future__ import annotations

import asyncio
import time

from .conftest import DeepAnalyzeAPI, NotebookKernel

SETUP = (
    "import numpy as np\nimport pandas as pd\n"
    "df = pd.DataFrame({'a': [1, 2, 3], 'b': [0.5, 1.5, 2.5]})\n"
    "prices = df['b']\nmatrix = np.zeros((4, 5), dtype='float32')\n"
    "wide = pd.DataFrame([[0] * 300])\nlabel = 'not data'\n_private = df"
)


async def test_variables_lists_dataframes_and_leaves_the_namespace_and_count_alone(
    api: DeepAnalyzeAPI, notebook: NotebookKernel
) -> None:
    await notebook.run(SETUP)
    before = await notebook.state()

    reply = await api.call("GET", "kernels", notebook.kernel_id, "variables")
    assert reply.code == 200
    listed = {v["name"]: v for v in reply.body["variables"]}
    assert sorted(listed) == ["df", "matrix", "prices", "wide"]  # sorted; no str, no _private
    assert listed["df"] == {
        "name": "df",
        "type": "pandas.DataFrame",
        "shape": [3, 2],
        "columns": [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "float64"}],
        "column_count": 2,
        "memory_bytes": listed["df"]["memory_bytes"],
    }
    assert listed["df"]["memory_bytes"] > 48  # two 3-row columns of 8 bytes, plus the index
    assert listed["prices"]["columns"] == [{"name": "b", "dtype": "float64"}]
    assert (listed["matrix"]["type"], listed["matrix"]["shape"], listed["matrix"]["memory_bytes"]) == (
        "numpy.ndarray",
        [4, 5],
        80,
    )
    assert listed["matrix"]["dtype"] == "float32"
    assert (len(listed["wide"]["columns"]), listed["wide"]["column_count"]) == (200, 300)  # bounded

    assert await notebook.state() == before  # same execution count, same names
    assert await notebook.run("print(_)") == "\n"  # the last result is still the user's ('')


async def test_a_busy_kernel_answers_409_quickly_and_an_unknown_kernel_404(
    api: DeepAnalyzeAPI, notebook: NotebookKernel
) -> None:
    busy = asyncio.ensure_future(notebook.run("import time\ntime.sleep(30)"))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    reply = await api.call("GET", "kernels", notebook.kernel_id, "variables")
    waited = time.monotonic() - started
    print(f"variables on a busy kernel answered {reply.code} after {waited:.2f} s")
    assert reply.code == 409
    assert reply.body["message"].startswith("The kernel is busy")
    await api.fetch("api", "kernels", notebook.kernel_id, "interrupt", method="POST", body="")  # end the sleep
    await busy

    missing = await api.call("GET", "kernels", "00000000-0000-0000-0000-000000000000", "variables")
    assert missing.code == 404
