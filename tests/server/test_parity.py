"""The server extension with ``DeepAnalyze.parity``: the notebook's kernel runs the model's
blocks as the reference's ``execute_code`` would, and the user's namespace is untouched."""

from __future__ import annotations

from typing import Any

import pytest
from traitlets.config import Config

from jupyter_deepanalyze.execution.parity import RESULT_NAME

from ..scripted_llm import ScriptedLLM
from .conftest import DeepAnalyzeAPI, NotebookKernel

USE_DF = (
    "<Code>\n```python\nimport sys\nprint('before')\nprint('to stderr', file=sys.stderr)\n"
    "made_by_the_model = 1\nprint(df.shape)\n```\n</Code>"
)
ANSWER = "<Answer>\ndf was not there.\n</Answer>"


@pytest.fixture
def jp_server_config(llm: ScriptedLLM) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_deepanalyze": True}},
            "DeepAnalyze": {"model": llm.url, "execution_timeout": 60.0, "parity": True},
        }
    )


async def test_with_parity_the_notebooks_kernel_runs_blocks_as_the_reference_does(
    api: DeepAnalyzeAPI, notebook: NotebookKernel, llm: ScriptedLLM
) -> None:
    await notebook.run("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})")
    _, names_before = await notebook.state()
    llm.turns.extend([USE_DF, ANSWER])
    run_id = await api.start_run(notebook_path=notebook.path, variables=["df"])
    events: list[dict[str, Any]] = await api.watch(run_id)

    [finished] = [e for e in events if e["type"] == "execution_finished"]
    expected = (
        "[Error]:\nTraceback (most recent call last):\n"
        '  File "<string>", line 5, in <module>\n    print(df.shape)\n'
        "NameError: name 'df' is not defined\nto stderr"
    )
    assert (finished["status"], finished["feedback"]) == ("error", expected)
    assert llm.requests[1]["messages"][-1] == {"role": "execute", "content": expected}
    # The notebook's cell shows what the block printed and its error.
    outputs = [e["output"] for e in events if e["type"] == "output"]
    assert any(o.get("text") == "before\n" for o in outputs)
    assert [o["ename"] for o in outputs if o["output_type"] == "error"] == ["NameError"]
    # The user's namespace gained nothing (beyond IPython's history entries, _i2...): not
    # the block's names, not ours.
    _, names_after = await notebook.state()
    assert [n for n in names_after if not n.startswith("_i")] == [n for n in names_before if not n.startswith("_i")]
    assert "made_by_the_model" not in names_after and RESULT_NAME not in names_after
