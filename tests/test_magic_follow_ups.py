"""Follow-ups from the magic: ``r.ask("…")`` and ``%analyze --continue``, in a real kernel (nbclient).

The model is the scripted OpenAI-compatible server; the follow-up's code uses what the
first run's code created (the same namespace), and the files it writes are the result's.
"""

from __future__ import annotations

from pathlib import Path

from jupyter_deepanalyze.events import MIME_TYPE
from jupyter_deepanalyze.feedback import strip_ansi

from .test_magics import FRAME, errors, execute, text

FIRST = [
    "<Analyze>Sum per group.</Analyze>\n<Code>\n```python\n"
    "by_group = df.groupby('group')['sales'].sum()\nprint(by_group.to_dict())\n```\n</Code>",
    "<Answer>Group **b** sells more.</Answer>",
]
ASKED = [
    "<Analyze>Shares of the sums from before.</Analyze>\n<Code>\n```python\n"
    "share = (by_group / by_group.sum()).round(2)\nshare.to_csv('share.csv')\nprint(share.to_dict())\n```\n</Code>",
    "<Answer>b has 70% of the sales.</Answer>",
]
CONTINUED = ["<Answer>Nothing more to add.</Answer>"]


def test_ask_and_continue_carry_the_conversation_on_in_the_same_namespace(scripted_llm, tmp_path: Path) -> None:
    llm = scripted_llm(FIRST + ASKED + CONTINUED)
    cells = [
        f"%load_ext jupyter_deepanalyze\n{FRAME}",
        f'r = %analyze df "Which group sells more?" --model {llm.url}',
        f'r2 = r.ask("And the share of each group?", model="{llm.url}")',
        "print(r2.parent_run_id == r.run_id, r2.status, [(f.path, f.status) for f in r2.files], r.files)",
        f'r3 = %analyze --continue "Anything else?" --model {llm.url}',
        "print(r3.parent_run_id == r2.run_id, r3.status, r3.report)",
    ]

    notebook = execute(cells, tmp_path)

    assert not any(errors(cell) for cell in notebook.cells), [errors(c) for c in notebook.cells]
    assert text(notebook.cells[3]) == "True completed [('share.csv', 'created')] []\n"
    assert text(notebook.cells[5]) == "True completed Nothing more to add.\n"
    assert (tmp_path / "share.csv").is_file()
    first_run, asked, continued = llm.requests[1], llm.requests[2], llm.requests[4]
    history = first_run["messages"] + [{"role": "assistant", "content": FIRST[1]}]
    assert asked["messages"][:-1] == history  # the first run's messages as sent
    question = asked["messages"][-1]
    assert question["role"] == "user"
    assert question["content"].startswith("# Instruction\nAnd the share of each group?\n\n# Data\n")
    assert '"name": "df"' in question["content"]  # its variables, described again
    assert continued["messages"][: len(asked["messages"])] == asked["messages"]
    assert continued["messages"][-1]["content"].startswith("# Instruction\nAnything else?")
    # The follow-up's display lists the file its code wrote.
    shown = [o for o in notebook.cells[2].outputs if o.output_type == "display_data" and MIME_TYPE in o.data]
    events = shown[0].data[MIME_TYPE]["events"]
    assert [e["files"] for e in events if e["type"] == "artifacts"] == [
        [{"path": "share.csv", "size": (tmp_path / "share.csv").stat().st_size, "status": "created"}]
    ]


def test_continuing_with_nothing_to_continue_is_one_line(scripted_llm, tmp_path: Path) -> None:
    llm = scripted_llm([])
    cells = [
        "%load_ext jupyter_deepanalyze",
        f'%analyze --continue "More?" --model {llm.url}',
    ]

    notebook = execute(cells, tmp_path)

    # IPython shows a UsageError as one stderr line, never a traceback.
    (shown,) = notebook.cells[1].outputs
    assert (shown.output_type, shown.name) == ("stream", "stderr")
    assert strip_ansi(shown.text) == "UsageError: %analyze --continue: no earlier run in this session to continue\n"
    assert not llm.requests
