"""The variables endpoint: a silent look at the kernel's data that leaves no trace, and
the description of variables the model reads, the same through the server and the magic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from ..scripted_llm import ScriptedLLM
from .conftest import QUESTION, DeepAnalyzeAPI, NotebookKernel

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
    running = asyncio.Event()
    busy = asyncio.ensure_future(
        notebook.run("print('busy', flush=True)\nimport time\ntime.sleep(30)", printing=running)
    )
    await asyncio.wait_for(running.wait(), 30)  # the cell runs: the kernel is busy
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


# Every kind of value the describer knows, with the dtypes a first message must not lose.
DATA = (
    "import numpy as np\nimport pandas as pd\n"
    "sales = pd.DataFrame({'region': ['n', 's', 'n'], 'units': [3, 4, 5], 'price': [1.5, 2.0, 2.5],\n"
    "    'day': pd.to_datetime(['2024-01-01', '2024-01-02', '2024-01-03']),\n"
    "    'kind': pd.Categorical(['a', 'b', 'a']), 'ok': [True, False, True]})\n"
    "matrix = np.zeros((4, 5), dtype='float32')\nprices = sales['price']\n"
    "wide = pd.DataFrame(np.zeros((2, 300)))\nlabel = 'not data'"
)
NAMES = ["sales", "matrix", "prices", "wide", "label"]
ANSWER = "<Answer>\nDone.\n</Answer>"


async def test_the_model_reads_the_same_data_section_through_the_server_and_the_magic(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM, tmp_path: Path
) -> None:
    # The server: the variables of the notebook's kernel, named in the run request.
    await notebook.run(DATA)
    llm.turns.append(ANSWER)
    run_id = await api.start_run(notebook_path=notebook.path, variables=NAMES)
    assert (await api.watch(run_id))[-1]["status"] == "completed"

    # The magic: the same data in another kernel, named on the %analyze line.
    llm.turns.append(ANSWER)
    magic = new_notebook(
        cells=[
            new_code_cell(DATA),
            new_code_cell("%load_ext jupyter_deepanalyze"),
            new_code_cell(f'%analyze {" ".join(NAMES)} "{QUESTION}" --model {llm.url}'),
        ]
    )
    client = NotebookClient(magic, kernel_name="python3", timeout=90, resources={"metadata": {"path": str(tmp_path)}})
    await client.async_execute()

    through_server, through_magic = (request["messages"][0]["content"] for request in llm.requests)
    assert through_magic == through_server
    data = through_server[through_server.index("# Data\n") :]
    assert '"type": "numpy.ndarray[float32]"' in data  # the array's dtype reaches the model
    assert "day (datetime64[" in data and "kind (category)" in data and "ok (bool)" in data
    assert "... 260 more" in data  # 300 columns, 40 shown
    assert '"name": "label",\n    "type": "str"\n' in data  # not data: its type alone
