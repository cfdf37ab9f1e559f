"""The official scorers on hand-checked cases, and the benchmark loaders on the real DABench files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_deepanalyze.eval.benchmarks import BenchmarkError, DABench, TableQA, select_tasks
from jupyter_deepanalyze.eval.scoring import (
    Metrics,
    denotation_equal,
    extract_named_answers,
    score_dabench,
    score_table_qa,
)

# DABench question 6 (four named sub-answers), labels as in labels.jsonl.
AGE_GROUP_LABELS = [
    ("mean_fare_elderly", "43.47"),
    ("mean_fare_teenager", "31.98"),
    ("mean_fare_child", "31.09"),
    ("mean_fare_adult", "35.17"),
]


def test_each_sub_answer_of_a_multi_part_answer_is_scored_on_its_own() -> None:
    answer = (
        "The means are: @mean_fare_child[31.1], @mean_fare_teenager[31.98], "
        "@mean_fare_adult[35.17], @mean_fare_elderly[43.47]"
    )
    score = score_dabench(answer, AGE_GROUP_LABELS)
    verdicts = {s.name: (s.predicted, s.correct) for s in score.sub_answers}
    assert verdicts == {
        "mean_fare_elderly": ("43.47", True),
        "mean_fare_teenager": ("31.98", True),
        "mean_fare_child": ("31.1", False),  # rounded to one place, not two
        "mean_fare_adult": ("35.17", True),
    }
    assert (score.correct, score.fraction) == (False, 0.75)


def test_a_missing_sub_answer_is_wrong_and_the_order_does_not_matter() -> None:
    answer = "@mean_fare_adult[35.17]\n@mean_fare_elderly[43.47]\n@mean_fare_child[31.09]"
    score = score_dabench(answer, AGE_GROUP_LABELS)
    assert [(s.name, s.predicted) for s in score.sub_answers if not s.correct] == [("mean_fare_teenager", None)]
    assert score.fraction == 0.75


def test_string_answers_must_match_exactly_as_the_official_scorer_does() -> None:
    assert score_dabench("@normality[not normal]", [("normality", "not normal")]).correct
    assert not score_dabench("@normality[Not normal]", [("normality", "not normal")]).correct
    assert not score_dabench("@is_linear[no ]", [("is_linear", "no")]).correct
    assert score_dabench("@missing_columns[]", [("missing_columns", "")]).correct
    assert score_dabench("@countries[Kuwait, Saudi Arabia]", [("countries", "Kuwait, Saudi Arabia")]).correct


def test_numbers_are_equal_within_1e_6_so_rounding_to_the_asked_places_matters() -> None:
    labels = [("mean_fare", "34.65")]
    assert score_dabench("@mean_fare[34.65]", labels).correct
    assert score_dabench("@mean_fare[34.650]", labels).correct
    assert score_dabench("@mean_fare[3.465e1]", labels).correct
    assert score_dabench("@mean_fare[34.6500000001]", labels).correct
    assert not score_dabench("@mean_fare[34.6]", labels).correct
    assert not score_dabench("@mean_fare[34.654]", labels).correct  # not rounded
    assert not score_dabench("@mean_fare[34.66]", labels).correct
    assert not score_dabench("mean_fare = 34.65", labels).correct  # not in the format


def test_extraction_follows_the_official_pattern() -> None:
    # A repeated name keeps its last value; a value never spans lines; names are \w+.
    assert extract_named_answers("@r[0.1] then corrected: @r[0.21]") == {"r": "0.21"}
    assert extract_named_answers("@r[0.1\n] @s[x]") == {"s": "x"}
    assert extract_named_answers("@a-b[1] @c_d[2]") == {"c_d": "2"}
    # A label list that repeats a name counts it once, as the official dict does.
    assert len(score_dabench("@x[2]", [("x", "1"), ("x", "2")]).sub_answers) == 1


def test_abq_psaq_and_uasq_match_a_hand_computation() -> None:
    scores = [
        score_dabench("@mean_fare[34.65]", [("mean_fare", "34.65")]),  # 1 of 1
        score_dabench("@r[0.14]", [("r", "0.21")]),  # 0 of 1
        score_dabench(  # 3 of 4
            "@mean_fare_child[31.1] @mean_fare_teenager[31.98] @mean_fare_adult[35.17] "
            "@mean_fare_elderly[43.47]",
            AGE_GROUP_LABELS,
        ),
    ]
    metrics = Metrics.of(scores)
    assert metrics.n == 3
    assert metrics.abq == pytest.approx(1 / 3)
    assert metrics.psaq == pytest.approx((1 + 0 + 0.75) / 3)
    assert metrics.uasq == pytest.approx(4 / 6)
    assert Metrics.of([]).abq == 0.0


def test_table_qa_normalises_numbers_and_text_and_compares_lists_as_sets() -> None:
    assert denotation_equal(["1,234.50"], ["1234.5"])
    assert denotation_equal(["50%"], ["50"])
    assert denotation_equal(["$12"], ["12.0"])
    assert denotation_equal(["New  York."], ["new york"])
    assert denotation_equal(["West", "north", "West"], ["North", "West"])
    assert not denotation_equal(["North"], ["North", "West"])
    assert not denotation_equal(["North", "West", "East"], ["North", "West"])
    assert not denotation_equal(["12.5"], ["12.4"])
    score = score_table_qa("Regions: @answer[west] and @answer[North].", ["North", "West"])
    assert score.correct and score.sub_answers[0].predicted == "west | North"
    assert not score_table_qa("North and West", ["North", "West"]).correct  # no @answer[...]


def test_dabench_loader_builds_the_prompt_from_question_constraints_and_format(shared: Path) -> None:
    bench = DABench(shared / "benchmarks" / "dabench")
    assert len(bench.tasks) == 257
    (task,) = select_tasks(bench.tasks, ["6"])
    question = json.loads(
        next(line for line in (bench.data_dir / "questions.jsonl").read_text().splitlines() if '"id": 6,' in line)
    )
    assert task.prompt == (
        f"Question: {question['question']}\n"
        f"Constraints: {question['constraints']}\n"
        f"Format: {question['format']}\n"
        'Your final answer must contain every "@answer_name[answer]" of the format, in the order given.'
    )
    assert task.files == (bench.data_dir / "tables" / "test_ave.csv",)
    assert dict(task.labels) == dict(AGE_GROUP_LABELS)
    assert (task.level, task.concepts) == ("medium", ("Feature Engineering", "Summary Statistics"))
    assert [t.id for t in select_tasks(bench.tasks, ["5", "0"], limit=1)] == ["0"]
    with pytest.raises(BenchmarkError, match="no such task id: 99999"):
        select_tasks(bench.tasks, ["0", "99999"])


def test_loaders_say_in_one_line_what_is_wrong_with_the_data(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="no DABench data at .*pass --data DIR"):
        DABench(tmp_path)
    (tmp_path / "questions.jsonl").write_text('{"id": 1, "question": "q", "files": ["a.csv"]}\n')
    with pytest.raises(BenchmarkError, match="lacks 'answers'"):
        TableQA(tmp_path)
    (tmp_path / "questions.jsonl").write_text('{"id": "a b", "question": "q", "files": "a.csv", "answers": 3}\n'
                                              '{"id": "a_b", "question": "q", "files": "a.csv", "answers": 3}\n')
    with pytest.raises(BenchmarkError, match="ids 'a b' and 'a_b' collide"):
        TableQA(tmp_path)
