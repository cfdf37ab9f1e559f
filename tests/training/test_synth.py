"""Data-grounded synthesis: ground truth from real kernels, a teacher model over HTTP, verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.data import load_rl_tasks, load_sft_rows
from training.env import EnvConfig
from training.rewards import openai_judge
from training.synth import TEMPLATES_BY_NAME, SynthConfig, TeacherConfig, instantiate, synthesize

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "scores.csv"
    path.write_text("name,score,age\nann,3.5,30\nbob,4.0,\ncid,5.0,41\n")
    return path


def test_templates_fill_numeric_columns(table: Path) -> None:
    tasks = instantiate(table, [TEMPLATES_BY_NAME["mean"], TEMPLATES_BY_NAME["correlation"]], max_columns=2)
    assert [t.id for t in tasks] == ["scores-mean-score", "scores-mean-age", "scores-correlation-score-age"]
    assert tasks[0].question == (
        'What is the mean of the column "score" in scores.csv? Round it to two decimal places. '
        "Answer in the form @mean_score[value]."
    )
    assert tasks[2].code == 'print(round(df["score"].corr(df["age"]), 2))'


async def test_reference_teacher_writes_verified_trajectories_with_real_outputs(table: Path, tmp_path: Path) -> None:
    config = SynthConfig(
        output_dir=str(tmp_path / "out"), tables=[str(table)], templates=["row_count", "mean", "missing"],
        max_columns=2, env=EnvConfig(kernels=2),
    )
    report = await synthesize(config)
    assert (report.tasks, report.verified, report.rejected) == (5, 5, 0)
    tasks, _ = load_rl_tasks([report.files["rl_tasks"]])
    truths = {t.id: t.ground_truth for t in tasks}
    assert truths["scores-row_count"] == [["row_count", "3"]]
    assert truths["scores-mean-score"] == [["mean_score", "4.17"]]
    assert truths["scores-missing-age"] == [["missing_age", "1"]]
    rows = {row["task_id"]: row for row in load_sft_rows([report.files["sft_agent"]])}
    trajectory = rows["scores-mean-score"]["messages"][1]["content"]
    assert "<Execute>\n(3, 3)\n['name', 'score', 'age']\n\n</Execute>" in trajectory  # what the kernel printed
    assert trajectory.endswith("<Answer>\n@mean_score[4.17]\n</Answer>")
    single = load_sft_rows([report.files["sft_single"]])
    assert any("@column_count[3]" in row["messages"][1]["content"] for row in single)


async def test_teacher_model_over_http_runs_the_agent_and_wrong_answers_are_rejected(
    table: Path, tmp_path: Path, scripted_llm: Any
) -> None:
    def teacher(request: dict[str, Any]) -> str:
        messages = request["messages"]
        if messages[-1]["role"] == "execute":  # answer with what the code printed
            question = messages[0]["content"]
            name = question.split("Answer in the form @")[1].split("[")[0]
            return f"<Understand>Done.</Understand>\n<Answer>\n@{name}[{messages[-1]['content'].strip()}]\n</Answer>"
        return (
            "<Analyze>Count the rows.</Analyze>\n<Code>\n```python\nimport pandas as pd\n"
            "print(len(pd.read_csv('scores.csv')))\n```\n</Code>"
        )

    llm = scripted_llm([teacher] * 4)
    config = SynthConfig(
        output_dir=str(tmp_path / "out"), tables=[str(table)], templates=["row_count", "max"], max_columns=1,
        teacher=TeacherConfig(kind="openai", base_url=llm.url, max_rounds=4), env=EnvConfig(kernels=2),
        single_ability=False,
    )
    report = await synthesize(config)
    # Both tasks were answered "3" (the row count): right for row_count, wrong for max_score (5.0).
    assert (report.tasks, report.verified, report.rejected) == (2, 1, 1)
    [row] = load_sft_rows([report.files["sft_agent"]])
    assert row["task_id"] == "scores-row_count"
    assert row["messages"][1]["content"] == (
        "<Analyze>Count the rows.</Analyze>\n<Code>\n```python\nimport pandas as pd\n"
        "print(len(pd.read_csv('scores.csv')))\n```\n</Code>\n<Execute>\n3\n\n</Execute>\n"
        "<Understand>Done.</Understand>\n<Answer>\n@row_count[3]\n</Answer>"
    )
    assert len(llm.requests) == 4 and all(r["stop"] == ["</Code>"] for r in llm.requests)
    assert json.loads((tmp_path / "out" / "synth_report.json").read_text())["verified"] == 1


def test_openai_judge_asks_the_endpoint_and_returns_its_reply(scripted_llm: Any) -> None:
    llm = scripted_llm(["Weak spots: none. SCORE: 4"])
    judge = openai_judge(llm.url, "judge-model")
    assert judge("rate this") == "Weak spots: none. SCORE: 4"
    assert llm.requests[0]["messages"] == [{"role": "user", "content": "rate this"}]
    assert llm.requests[0]["model"] == "judge-model"
