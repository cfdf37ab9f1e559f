"""Reward functions on hand-checked trajectories, with a scripted judge."""

from __future__ import annotations

import pytest

from training.rewards import (
    REPORT_DIMENSIONS,
    RewardOptions,
    RewardSpec,
    answer_score,
    code_success_ratio,
    execution_failed,
    final_answer,
    format_ok,
    judge_score,
    parse_dimension_scores,
    parse_judge_score,
    research_turn_bonus,
    score_trajectory,
    values_match,
)

GOOD = (
    "<Analyze>Load the table.</Analyze>\n<Code>\n```python\nprint(34.651)\n```\n</Code>\n"
    "<Execute>\n34.651\n\n</Execute>\n<Understand>It is 34.65.</Understand>\n"
    "<Answer>\n@mean_fare[34.65]\n</Answer>"
)
FAILED_THEN_FIXED = (
    "<Analyze>a</Analyze><Code>\n```python\nprint(df)\n```\n</Code>\n"
    "<Execute>\n[Error]:\nTraceback (most recent call last):\nNameError: name 'df' is not defined\n</Execute>\n"
    "<Code>\n```python\nprint(1)\n```\n</Code>\n<Execute>\n1\n\n</Execute>\n<Answer>1</Answer>"
)


REFERENCE = RewardOptions.reference()


class ScriptedJudge:
    """Replies with the next scripted text and records the prompts it saw."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.replies.pop(0)


def test_format_gate_needs_analyze_and_answer() -> None:
    assert format_ok(GOOD)
    assert not format_ok("<Answer>1</Answer>")
    assert not format_ok("<Analyze>thinking</Analyze>")
    assert format_ok("<Analyze>x</Analyze><Code>print(1)</Code><Answer>1</Answer>")
    assert not format_ok(
        "<Analyze>x</Analyze><Code>print(1)</Code><Answer>1</Answer>", require_python_fence=True
    )
    assert format_ok(GOOD, require_python_fence=True)


def test_final_answer_is_the_last_answer_segment() -> None:
    assert final_answer(GOOD) == "@mean_fare[34.65]"
    assert final_answer("<Answer>a</Answer> <Answer> b </Answer>") == "b"
    assert final_answer("<Analyze>x</Analyze>") is None


@pytest.mark.parametrize(
    ("predicted", "truth", "expected"),
    [
        ("34.65", "34.65", True),
        ("34.650", "34.65", True),
        ("34.66", "34.65", False),
        ("1,234", "1234", True),
        (" Male. ", "male", True),
        ("female", "male", False),
        ("nan", "nan", True),
    ],
)
def test_values_match_exact_and_numeric(predicted: str, truth: str, expected: bool) -> None:
    assert values_match(predicted, truth) is expected


def test_numeric_tolerance_is_absolute() -> None:
    assert values_match("0.2101", "0.21", tolerance=0.001)
    assert not values_match("0.212", "0.21", tolerance=0.001)


def test_dabench_scoring_follows_the_official_rule() -> None:
    labels = [["mean_fare_elderly", "43.47"], ["mean_fare_child", "31.09"], ["count", "3"]]
    text = "@mean_fare_elderly[43.470] @mean_fare_child[31.1] @count[3]"
    assert answer_score(text, labels, kind="dabench") == pytest.approx(2 / 3)
    assert answer_score("no tags here", labels, kind="dabench") == 0.0
    assert answer_score(None, labels, kind="dabench") == 0.0
    # Where the old reward disagreed with the evaluation: no percent or thousands leniency.
    assert answer_score("@x[50%]", [["x", "50"]], kind="dabench") == 0.0
    assert answer_score("@x[1,234]", [["x", "1234"]], kind="dabench") == 0.0
    assert answer_score("@x[ 1234 ]", [["x", "1234"]], kind="dabench") == 1.0  # float() strips


def test_code_success_ratio_counts_errors_and_timeouts() -> None:
    feedbacks = ["1\n", "[Error]:\nKeyError: 'x'", "ok\n[Timeout]: execution exceeded 5 seconds", "2"]
    assert code_success_ratio([not execution_failed(f) for f in feedbacks]) == 0.5
    assert code_success_ratio([]) is None


def test_research_turn_bonus_saturates_at_ten_turns() -> None:
    assert research_turn_bonus(3) == pytest.approx(0.3)
    assert research_turn_bonus(25) == 1.0


def test_judge_score_parses_the_last_score_line() -> None:
    assert parse_judge_score("weak in places. SCORE: 4") == pytest.approx(0.8)
    assert parse_judge_score("SCORE: 2\nrevised... **SCORE: 5**") == 1.0
    assert parse_judge_score("no score") is None
    judge = ScriptedJudge("Weaknesses: none.\nSCORE: 3")
    assert judge_score(judge, question="Mean fare?", solution=GOOD, reference="34.65") == pytest.approx(0.6)
    assert "Mean fare?" in judge.prompts[0] and "@mean_fare[34.65]" in judge.prompts[0]


def test_qa_reward_is_mean_of_answer_match_and_judged_analysis() -> None:
    spec = RewardSpec(kind="dabench")
    labels = [["mean_fare", "34.65"]]
    judged = score_trajectory(GOOD, spec, ground_truth=labels, question="q", judge=ScriptedJudge("SCORE: 4"))
    assert judged.reward == pytest.approx((1.0 + 0.8) / 2)
    plain = score_trajectory(GOOD, spec, ground_truth=labels)
    assert plain.reward == 1.0 and plain.answer == 1.0
    wrong = score_trajectory(GOOD, RewardSpec(kind="qa"), ground_truth="12")
    assert wrong.reward == 0.0


def test_format_failure_scores_minus_one_whatever_the_answer() -> None:
    no_analyze = GOOD.replace("<Analyze>Load the table.</Analyze>\n", "")
    result = score_trajectory(no_analyze, RewardSpec(kind="dabench"), ground_truth=[["mean_fare", "34.65"]])
    assert result.reward == -1.0 and not result.format_ok
    unfenced = "<Analyze>x</Analyze><Code>print(1)</Code><Execute>\n1\n</Execute><Answer>r</Answer>"
    assert score_trajectory(unfenced, RewardSpec(kind="data")).reward == -1.0


def test_data_task_reward_is_mean_of_judge_and_code_success() -> None:
    result = score_trajectory(FAILED_THEN_FIXED, RewardSpec(kind="data"), judge=ScriptedJudge("SCORE: 5"))
    assert result.code_success == 0.5
    assert result.reward == pytest.approx((1.0 + 0.5) / 2)


def test_research_reward_adds_the_turn_bonus() -> None:
    judge = ScriptedJudge("SCORE: 2")
    result = score_trajectory(FAILED_THEN_FIXED, RewardSpec(kind="research"), judge=judge, question="Report")
    assert result.turn_bonus == pytest.approx(0.3)  # two executions: three model turns
    assert result.reward == pytest.approx((0.4 + 0.5 + 0.3) / 3)
    assert "usefulness" in judge.prompts[0]


def test_reward_spec_rejects_unknown_kinds_and_settings() -> None:
    with pytest.raises(ValueError, match="unknown reward kind"):
        RewardSpec(kind="essay")
    with pytest.raises(ValueError, match="unknown reward setting"):
        RewardSpec.from_dict({"kind": "qa", "weight": 2})


def test_qa_exact_match_is_the_references_string_equality() -> None:
    trajectory = "<Analyze>a</Analyze><Answer>\n12.0\n</Answer>"
    tolerant = score_trajectory(trajectory, RewardSpec(kind="qa"), ground_truth="12")
    exact = score_trajectory(trajectory, RewardSpec(kind="qa"), ground_truth="12", options=RewardOptions.reference())
    assert (tolerant.answer, exact.answer) == (1.0, 0.0)
    prefixed = "<Analyze>a</Analyze><Answer>\nThe total. Answer: 12\n</Answer>"
    right = score_trajectory(prefixed, RewardSpec(kind="qa"), ground_truth="12", options=RewardOptions.reference())
    assert right.answer == 1.0  # the text after "Answer:", stripped


def test_the_reference_averages_the_five_report_dimensions_in_separately() -> None:
    reply = (
        'Weak on richness.\n```json\n{"usefulness": 5, "richness": 2, "soundness": 4, '
        '"interpretability": 3, "readability": 5,}\n```'
    )
    judge = ScriptedJudge(reply)
    result = score_trajectory(
        FAILED_THEN_FIXED, RewardSpec(kind="research"), judge=judge, question="Report", options=REFERENCE
    )
    dimensions = [1.0, 0.4, 0.8, 0.6, 1.0]
    # Seven parts: five dimensions, the code success share (1 of 2) and the turn bonus (3 turns).
    assert result.reward == pytest.approx((sum(dimensions) + 0.5 + 0.3) / 7)
    assert result.judged == pytest.approx(sum(dimensions) / 5)
    assert all(name in judge.prompts[0] for name in REPORT_DIMENSIONS)
    unreadable = score_trajectory(
        FAILED_THEN_FIXED, RewardSpec(kind="research"), judge=ScriptedJudge("no JSON"), options=REFERENCE
    )
    assert unreadable.parts["judged"] == 0.0 and unreadable.reward == pytest.approx((0.0 + 0.5 + 0.3) / 3)
    assert parse_dimension_scores('{"usefulness": 5}') is None


def test_the_code_success_share_is_left_out_when_nothing_ran_as_the_reference_does() -> None:
    no_code = "<Analyze>Think.</Analyze><Answer>\nA report.\n</Answer>"
    judge = ScriptedJudge("SCORE: 3", "SCORE: 3")
    ours = score_trajectory(no_code, RewardSpec(kind="data"), judge=judge)
    reference = score_trajectory(no_code, RewardSpec(kind="data"), judge=judge, options=RewardOptions.reference())
    assert ours.reward == pytest.approx((0.6 + 1.0) / 2)
    assert reference.reward == pytest.approx(0.6) and "code_success" not in reference.parts
    # What the environment judged passed or failed counts, whatever the feedback reads.
    dropped = score_trajectory(GOOD, RewardSpec(kind="data", require_python_fence=False), code_results=[False])
    assert dropped.code_success == 0.0


def test_answer_tags_printed_by_code_are_not_the_models() -> None:
    printed = (
        "<Analyze>a</Analyze><Code>print('<Answer>1</Answer>')</Code>\n<Execute>\n<Answer>1</Answer>\n</Execute>\n"
    )
    assert final_answer(printed) is None and not format_ok(printed)
