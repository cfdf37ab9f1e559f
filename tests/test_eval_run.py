"""`jupyter deepanalyze eval` as a user runs it: real DABench tasks, real kernels, a scripted model.

The scripted model computes every answer with real code in the task's kernel and then
answers in DABench's ``@name[value]`` format, deliberately right or wrong, so the
expected metrics are known.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from .conftest import REPO

JUPYTER = str(Path(sys.executable).parent / "jupyter")

LOAD = "import pandas as pd\ndf = pd.read_csv('test_ave.csv')\n"
CODE = {
    # id 0, right: the mean fare, rounded to two places as asked.
    "mean fare paid by the passengers": LOAD + "print(round(df['Fare'].mean(), 2))",
    # id 5, wrong: the correlation of SibSp (not FamilySize) with Fare.
    '"FamilySize" by summing': LOAD + "print(round(df['SibSp'].corr(df['Fare']), 2))",
    # id 6: four group means; the answer gets one of them wrong (3 of 4 right).
    '"AgeGroup" that categorizes': LOAD
    + "import json\n"
    "df['AgeGroup'] = pd.cut(df['Age'], bins=[-1, 12, 19, 59, 1000], "
    "labels=['Child', 'Teenager', 'Adult', 'Elderly'])\n"
    "means = df.groupby('AgeGroup', observed=True)['Fare'].mean()\n"
    "print(json.dumps({k.lower(): round(v, 2) for k, v in means.items()}))",
}
RIGHT_FAMILY_SIZE = (
    LOAD + "df['FamilySize'] = df['SibSp'] + df['Parch']\nprint(round(df['FamilySize'].corr(df['Fare']), 2))"
)
CRASH = "import os\nos._exit(1)"


def answer_for(question: str, output: str) -> str:
    value = output.strip()
    if "mean fare paid" in question:
        return f"<Answer>\nThe mean fare is {value}.\n\n@mean_fare[{value}]\n</Answer>"
    if "FamilySize" in question:
        return f"<Answer>\n@correlation_coefficient[{value}]\n</Answer>"
    means = json.loads(value)
    return (
        f"<Answer>\n@mean_fare_child[{round(means['child'], 1)}], @mean_fare_teenager[{means['teenager']}], "
        f"@mean_fare_adult[{means['adult']}], @mean_fare_elderly[{means['elderly']}]\n</Answer>"
    )


def dabench_policy(code_for: dict[str, str]) -> Callable[[dict[str, Any]], str]:
    """Round 1 runs the task's code; round 2 answers from what the kernel printed."""

    def turn(body: dict[str, Any]) -> str:
        messages = body["messages"]
        question = messages[0]["content"]
        if len(messages) == 1:
            code = next(code for marker, code in code_for.items() if marker in question)
            return f"<Analyze>\nCompute it.\n</Analyze>\n<Code>\n```python\n{code}\n```\n</Code>"
        return answer_for(question, messages[-1]["content"])

    return turn


def evaluate(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JUPYTER, "deepanalyze", "eval", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def records(out: Path, task_id: str) -> list[dict[str, Any]]:
    lines = (out / "trajectories" / f"{task_id}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def asked(llm: Any) -> list[str]:
    """The question lines of the tasks the model was asked to start."""
    return [r["messages"][0]["content"].splitlines()[1] for r in llm.requests if len(r["messages"]) == 1]


def test_eval_writes_trajectories_notebooks_a_chart_and_the_official_metrics(
    scripted_llm, shared, tmp_path: Path
) -> None:
    llm = scripted_llm([dabench_policy(CODE)] * 6)
    out = tmp_path / "run"
    done = evaluate("dabench", "--ids", "0,5,6", "--model", llm.url, "--out", str(out), "--concurrency", "2")
    assert done.returncode == 0, done.stderr

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["benchmark"], summary["model"], summary["n"]) == ("dabench", "DeepAnalyze-8B", 3)
    assert summary["abq"] == round(1 / 3, 6)
    assert summary["psaq"] == round((1 + 0 + 0.75) / 3, 6)
    assert summary["uasq"] == round(4 / 6, 6)
    assert summary["sub_answers"] == {"correct": 4, "total": 6}
    assert summary["statuses"] == {"completed": 3}
    assert summary["by_level"] == {
        "easy": {"n": 1, "abq": 1.0, "psaq": 1.0, "uasq": 1.0, "sub_answers": {"correct": 1, "total": 1}},
        "medium": {"n": 2, "abq": 0.0, "psaq": 0.375, "uasq": 0.6, "sub_answers": {"correct": 3, "total": 5}},
    }
    assert summary["by_concept"]["Summary Statistics"]["abq"] == 0.5  # ids 0 and 6
    assert summary["timings"]["concurrency"] == 2 and summary["timings"]["tasks_run"] == 3

    # The trajectory: the run's events, then the scored result with the conversation.
    events = records(out, "0")
    assert events[0]["type"] == "run_started" and events[-2]["type"] == "run_finished"
    result = events[-1]
    assert result["type"] == "eval_result" and result["status"] == "completed" and result["correct"]
    assert result["sub_answers"] == [{"name": "mean_fare", "expected": "34.65", "predicted": "34.65", "correct": True}]
    assert [m["role"] for m in result["messages"]] == ["user", "assistant", "execute", "assistant"]
    assert result["messages"][2]["content"] == "34.65\n"  # computed by the kernel from the task's CSV
    first = result["messages"][0]["content"]
    assert first.startswith("# Instruction\nQuestion: Calculate the mean fare paid by the passengers.\nConstraints: ")
    assert "Format: @mean_fare[mean_fare_value]" in first and '"name": "test_ave.csv"' in first
    wrong = records(out, "6")[-1]
    assert [s["name"] for s in wrong["sub_answers"] if not s["correct"]] == ["mean_fare_child"]
    assert wrong["fraction"] == 0.75

    notebook = nbformat.read(out / "notebooks" / "0.ipynb", as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells[0].outputs[0]["text"] == "34.65\n"
    assert notebook.cells[-1].metadata["deepanalyze"]["role"] == "report"

    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "n=3  ABQ 33.3%  PSAQ 58.3%  UASQ 66.7%" in done.stdout
    assert "dabench 3/3" in done.stderr and "ETA" in done.stderr


def test_resume_skips_finished_tasks_and_a_crashing_task_is_recorded_not_fatal(
    scripted_llm, shared, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    command = ("dabench", "--ids", "0,5", "--out", str(out))
    crashing = {"mean fare paid": CRASH, '"FamilySize" by summing': RIGHT_FAMILY_SIZE}
    llm = scripted_llm([dabench_policy(crashing)] * 4)
    first = evaluate(*command, "--model", llm.url)
    assert first.returncode == 0, first.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n"], summary["abq"], summary["statuses"]) == (2, 0.5, {"failed": 1, "completed": 1})
    crashed = records(out, "0")[-1]
    assert crashed["status"] == "failed" and not crashed["correct"]
    assert "the kernel died" in crashed["error"]
    assert records(out, "5")[-1]["correct"]  # ran on a fresh kernel after the crash
    assert "failed 1 counted as wrong" in first.stdout

    # Rerun: both tasks have a final record, so nothing is asked of the model.
    idle = scripted_llm([])
    again = evaluate(*command, "--model", idle.url)
    assert again.returncode == 0, again.stderr
    assert idle.requests == [] and "2 of 2 tasks already done" in again.stderr
    assert json.loads((out / "summary.json").read_text())["abq"] == 0.5

    # A task interrupted before its final record runs again; the failed one stays failed.
    trajectory = out / "trajectories" / "5.jsonl"
    trajectory.write_text("".join(trajectory.read_text().splitlines(keepends=True)[:-1]))
    fixed = {"mean fare paid": CODE["mean fare paid by the passengers"], '"FamilySize" by summing': RIGHT_FAMILY_SIZE}
    llm = scripted_llm([dabench_policy(fixed)] * 4)
    resumed = evaluate(*command, "--model", llm.url)
    assert resumed.returncode == 0, resumed.stderr
    assert [q.split(":")[0] for q in asked(llm)] == ["Question"] and "FamilySize" in asked(llm)[0]
    assert json.loads((out / "summary.json").read_text())["statuses"] == {"failed": 1, "completed": 1}

    # --retry-failed runs the failed task again.
    llm = scripted_llm([dabench_policy(fixed)] * 2)
    retried = evaluate(*command, "--model", llm.url, "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert len(asked(llm)) == 1 and "mean fare" in asked(llm)[0]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["abq"], summary["statuses"]) == (1.0, {"completed": 2})


def test_a_table_qa_set_plugs_in_and_a_task_without_its_file_fails_alone(scripted_llm, tmp_path: Path) -> None:
    data = tmp_path / "set"
    data.mkdir()
    (data / "sales.csv").write_text("region,units,revenue\nNorth,120,1000.5\nSouth,80,234\nWest,150,0\n")
    questions = [
        {"id": "regions", "question": "Which regions sold more than 100 units?", "files": ["sales.csv"],
         "answers": ["North", "West"], "level": "easy"},
        {"id": "revenue", "question": "What is the total revenue?", "files": "sales.csv", "answers": "1,234.5",
         "level": "hard"},
        {"id": "lost", "question": "How many rows?", "files": ["missing.csv"], "answers": ["3"]},
    ]
    (data / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    code = {
        "more than 100": "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(*df[df.units > 100].region)",
        "total revenue": "import pandas as pd\nprint(pd.read_csv('sales.csv').revenue.sum())",
    }

    def turn(body: dict[str, Any]) -> str:
        messages = body["messages"]
        question = messages[0]["content"]
        if len(messages) == 1:
            block = next(c for marker, c in code.items() if marker in question)
            return f"<Code>\n{block}\n</Code>"
        values = messages[-1]["content"].split()
        return "<Answer>\n" + " ".join(f"@answer[{v.lower()}]" for v in reversed(values)) + "\n</Answer>"

    llm = scripted_llm([turn] * 4)
    out = tmp_path / "out"
    done = evaluate("tableqa", "--data", str(data), "--model", llm.url, "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n"], summary["accuracy"], summary["correct"]) == (3, round(2 / 3, 6), 2)
    assert "abq" not in summary  # one denotation per question: sub-answer metrics do not apply
    assert summary["statuses"] == {"completed": 2, "failed": 1}
    lost = next(t for t in summary["tasks"] if t["id"] == "lost")
    assert lost["status"] == "failed" and "no such file or folder" in lost["error"]
    assert records(out, "revenue")[-1]["sub_answers"][0]["predicted"] == "1234.5"
    assert "n=3  accuracy 66.7%" in done.stdout


def test_bad_eval_arguments_get_one_line(scripted_llm, shared, tmp_path: Path) -> None:
    unknown = evaluate("dabench", "--ids", "0,99999", "--model", "http://127.0.0.1:9/v1")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "jupyter deepanalyze: no such task id: 99999"
    nodata = evaluate("dabench", "--data", str(tmp_path), "--model", "http://127.0.0.1:9/v1")
    assert nodata.returncode == 2 and nodata.stderr.count("\n") == 1 and "no DABench data at" in nodata.stderr
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text('{"benchmark": "dabench", "model": "another-model"}')
    llm = scripted_llm([])
    other = evaluate("dabench", "--ids", "0", "--model", llm.url, "--out", str(tmp_path / "run"))
    assert other.returncode == 2
    assert "holds results of model 'another-model', not 'DeepAnalyze-8B'" in other.stderr
    assert llm.requests == []


def test_eval_with_parity_tells_the_model_the_references_text_and_keeps_its_results_apart(
    scripted_llm, shared, tmp_path: Path
) -> None:
    failing = "<Code>\n```python\nimport sys\nprint('printed')\nprint('warned', file=sys.stderr)\n1 / 0\n```\n</Code>"
    llm = scripted_llm([failing, "<Answer>\n@mean_fare[34.65]\n</Answer>"])
    out = tmp_path / "out"
    done = evaluate("dabench", "--ids", "0", "--model", llm.url, "--out", str(out), "--parity")
    assert done.returncode == 0, done.stderr
    assert llm.requests[1]["messages"][-1] == {
        "role": "execute",
        "content": "[Error]:\nTraceback (most recent call last):\n"
        '  File "<string>", line 4, in <module>\n    1 / 0\nZeroDivisionError: division by zero\nwarned',
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parity"] is True and summary["abq"] == 1.0
    mixed = evaluate("dabench", "--ids", "0", "--model", llm.url, "--out", str(out))
    assert mixed.returncode == 2 and "holds results of parity True, not False" in mixed.stderr


def test_ctrl_c_stops_the_run_and_leaves_the_running_task_to_resume(scripted_llm, shared, tmp_path: Path) -> None:
    slow = {"mean fare paid": "print('started', flush=True)\nimport time\ntime.sleep(60)",
            '"FamilySize" by summing': RIGHT_FAMILY_SIZE}
    llm = scripted_llm([dabench_policy(slow)] * 4)
    out = tmp_path / "run"
    process = subprocess.Popen(
        [JUPYTER, "deepanalyze", "eval", "dabench", "--ids", "0,5", "--model", llm.url, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    trajectory = out / "trajectories" / "0.jsonl"
    deadline = time.monotonic() + 60
    while not (trajectory.exists() and "started" in trajectory.read_text()):
        assert time.monotonic() < deadline and process.poll() is None, "the task never started"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    assert records(out, "0")[-1]["type"] == "run_finished"  # no eval_result: not done
    assert records(out, "0")[-1]["status"] == "cancelled"
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n"], summary["pending"], summary["complete"]) == (0, ["0", "5"], False)
    assert len(asked(llm)) == 1  # task 5 was never started
