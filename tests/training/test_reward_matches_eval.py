"""The RL reward and the evaluation score every DABench answer the same way.

Real DABench questions and labels from ../shared (read by the evaluation's loader and by
training's); answers generated around each label (the label itself, reformatted numbers,
percent and thousands forms, other names, repeats, noise). The evaluation's side is
what ``eval/runner.py`` does with a finished turn: the last ``<Answer>`` segment,
stripped, scored by the benchmark.
"""

from __future__ import annotations

from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_deepanalyze.eval.benchmarks import DABench
from jupyter_deepanalyze.protocol import parse_segments
from training.data import load_dabench_tasks
from training.rewards import RewardSpec, score_trajectory


@lru_cache(maxsize=1)
def benchmark() -> DABench:
    return DABench()


@lru_cache(maxsize=1)
def rl_tasks() -> dict[str, object]:
    return {task.id: task for task in load_dabench_tasks()}


def variants(value: str) -> st.SearchStrategy[str]:
    """Ways a model may write a labelled value."""
    forms = [value, f" {value} ", f"{value}%", value.replace(".", ","), f"{value}0", value.upper()]
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        nearby = str(int(number)) if number.is_integer() else f"{number + 1e-7}"
        forms += [f"{number:,.2f}", f"{number:.1f}", f"{number:e}", nearby]
    return st.sampled_from(forms) | st.text(alphabet="0123456789.,-%eE abcXYZ_", max_size=8)


@st.composite
def answered_task(draw: st.DrawFn) -> tuple[object, str]:
    task = draw(st.sampled_from(benchmark().tasks))
    parts = []
    for name, value in task.labels:
        if draw(st.booleans()) or not parts:
            written_name = draw(st.sampled_from([name, name, name.upper(), f"{name}_x"]))
            parts.append(f"@{written_name}[{draw(variants(value))}]")
        if draw(st.integers(0, 5)) == 0:  # a repeated name: the last one counts
            parts.append(f"@{name}[{draw(variants(value))}]")
    joiner = draw(st.sampled_from([" ", "\n", ", ", "\n- "]))
    noise = draw(st.sampled_from(["", "The results are:\n", "**Answer**: "]))
    return task, noise + joiner.join(draw(st.permutations(parts)))


def evaluation_fraction(task: object, turn: str) -> float:
    answers = [s.text.strip() for s in parse_segments(turn) if s.tag == "Answer"]
    return benchmark().score(task, answers[-1]).fraction


@settings(max_examples=400, deadline=None)
@given(answered_task())
def test_the_reward_and_the_evaluation_agree_on_every_dabench_answer(case: tuple[object, str]) -> None:
    task, answer = case
    turn = f"<Analyze>\nCompute it.\n</Analyze>\n<Answer>\n{answer}\n</Answer>"
    rl_task = rl_tasks()[f"dabench-{task.id}"]
    reward = score_trajectory(turn, RewardSpec(kind="dabench"), ground_truth=rl_task.ground_truth)
    assert reward.answer == evaluation_fraction(task, turn)
