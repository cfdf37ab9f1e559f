"""SFT masking on the tiny tokenizer, RL rows, DABench loading, curriculum ordering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data import (
    DataError,
    RLTask,
    by_difficulty,
    curriculum_stages,
    load_dabench_tasks,
    load_rl_tasks,
    load_sft_rows,
    resolve_path,
    sft_row,
    task_first_message,
    tokenize_trajectory,
)
from training.rewards import RewardSpec

TRAJECTORY = (
    "<Analyze>Read it.</Analyze>\n<Code>\n```python\nprint(2 + 2)\n```\n</Code>\n"
    "<Execute>\n4\n\n</Execute>\n<Understand>Four.</Understand>\n<Answer>4</Answer>"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def trained_text(tokenizer, tokenized) -> str:
    return tokenizer.decode([t for t, m in zip(tokenized.input_ids, tokenized.loss_mask, strict=True) if m])


def masked_text(tokenizer, tokenized) -> str:
    return tokenizer.decode([t for t, m in zip(tokenized.input_ids, tokenized.loss_mask, strict=True) if not m])


def test_loss_mask_covers_the_assistant_text_but_no_execute_span(tokenizer) -> None:
    messages = [{"role": "user", "content": "# Instruction\nAdd."}, {"role": "assistant", "content": TRAJECTORY}]
    tokenized = tokenize_trajectory(messages, tokenizer)
    assert tokenizer.decode(tokenized.input_ids) == tokenizer.apply_chat_template(messages, tokenize=False)
    assert trained_text(tokenizer, tokenized) == (
        "<Analyze>Read it.</Analyze>\n<Code>\n```python\nprint(2 + 2)\n```\n</Code>\n"
        "\n<Understand>Four.</Understand>\n<Answer>4</Answer><｜end▁of▁sentence｜>"
    )
    assert masked_text(tokenizer, tokenized) == (
        "<｜begin▁of▁sentence｜><｜User｜># Instruction\nAdd.<｜Assistant｜><Execute>\n4\n\n</Execute>"
    )
    labels = tokenized.labels()
    assert labels.count(-100) == tokenized.loss_mask.count(0)


def test_execute_role_messages_render_and_mask_like_one_trajectory(tokenizer) -> None:
    split = [
        {"role": "user", "content": "# Instruction\nAdd."},
        {"role": "assistant", "content": TRAJECTORY.split("\n<Execute>")[0]},
        {"role": "execute", "content": "4\n"},
        {"role": "assistant", "content": TRAJECTORY.split("</Execute>\n")[1]},
    ]
    whole = [split[0], {"role": "assistant", "content": TRAJECTORY}]
    assert tokenizer.apply_chat_template(split, tokenize=False) == tokenizer.apply_chat_template(whole, tokenize=False)
    a, b = tokenize_trajectory(split, tokenizer), tokenize_trajectory(whole, tokenizer)
    assert a.input_ids == b.input_ids and a.loss_mask == b.loss_mask


def test_a_template_without_the_execute_role_refuses_separate_execute_messages() -> None:
    from training.tiny import build_tiny_tokenizer

    base = build_tiny_tokenizer(tags=False)  # a base model's template: no `execute` role
    whole = [{"role": "user", "content": "# Instruction\nAdd."}, {"role": "assistant", "content": TRAJECTORY}]
    assert tokenize_trajectory(whole, base).input_ids  # one assistant message: fine
    split = [whole[0], {"role": "assistant", "content": "<Code>x</Code>"}, {"role": "execute", "content": "4\n"},
             {"role": "assistant", "content": "<Answer>4</Answer>"}]
    with pytest.raises(DataError, match="does not render 'execute' messages"):
        tokenize_trajectory(split, base)


def test_every_execute_span_is_masked_in_a_long_trajectory(tokenizer) -> None:
    turns = "".join(
        f"<Analyze>step {i}</Analyze><Code>print({i})</Code>\n<Execute>\n{i} <Answer>fake</Answer>\n</Execute>\n"
        for i in range(3)
    )
    tokenized = tokenize_trajectory(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": turns + "<Answer>2</Answer>"}], tokenizer
    )
    trained = trained_text(tokenizer, tokenized)
    assert "<Execute>" not in trained and "</Execute>" not in trained and "fake" not in trained
    assert trained.count("<Analyze>") == 3 and trained.endswith("<Answer>2</Answer><｜end▁of▁sentence｜>")


def test_sft_rows_are_validated_with_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(sft_row("Add.", [], TRAJECTORY, source="test")) + "\n")
    rows = load_sft_rows([good])
    assert rows[0]["messages"][0]["content"] == "# Instruction\nAdd." and rows[0]["source"] == "test"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: 'messages' must be"):
        load_sft_rows([bad])


def test_rl_tasks_round_trip_and_describe_their_files(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a\n1\n")
    task = RLTask("t1", "Mean of a?", ["t.csv"], RewardSpec(kind="qa", tolerance=0.01), "1", 2.0)
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(task.to_row()) + "\n")
    loaded, bases = load_rl_tasks([path])
    assert loaded == [task] and bases["t1"] == tmp_path
    assert task_first_message(loaded[0], bases["t1"]) == (
        '# Instruction\nMean of a?\n\n# Data\nFile 1:\n{\n    "name": "t.csv",\n    "size": "0.0KB"\n}\n\n'
    )
    path.write_text(json.dumps({"id": "x", "question": "q", "reward": {"kind": "poem"}}) + "\n")
    with pytest.raises(DataError, match=r"tasks\.jsonl:1: unknown reward kind"):
        load_rl_tasks([path])


def test_dabench_tasks_come_from_shared_data(shared: Path) -> None:
    tasks = load_dabench_tasks([0, 6])
    assert [t.id for t in tasks] == ["dabench-0", "dabench-6"]
    assert tasks[0].ground_truth == [["mean_fare", "34.65"]] and tasks[0].difficulty == 1.0
    assert tasks[0].files == ["shared:benchmarks/dabench/tables/test_ave.csv"]
    assert resolve_path(tasks[0].files[0]) == shared / "benchmarks/dabench/tables/test_ave.csv"
    assert '"name": "test_ave.csv"' in task_first_message(tasks[0])


def test_curriculum_orders_and_splits_by_difficulty() -> None:
    rows = [{"id": i, "difficulty": d} for i, d in enumerate([3, 1, 2, 1, 5])]
    assert [r["id"] for r in by_difficulty(rows)] == [1, 3, 2, 0, 4]
    stages = curriculum_stages(rows, [1, 3])
    assert [[r["id"] for r in s] for s in stages] == [[1, 3], [2, 0], [4]]
