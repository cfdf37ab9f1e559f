"""Token-space rollouts against real kernels: masks, observations, stops, limits, logprobs."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from training.env import EnvConfig, EnvironmentThread
from training.episode import NO_CODE_FEEDBACK, EpisodeRunner, EpisodeSpec, Generation, RolloutConfig
from training.generation import HFGenerate, SamplingConfig

CODE_TURN = (
    "<Analyze>Sum it.</Analyze>\n<Code>\n```python\nimport pandas as pd\nprint(pd.read_csv('n.csv')['n'].sum())\n```\n"
    "</Code>"
)
ANSWER_TURN = "<Understand>Six.</Understand>\n<Answer>6</Answer><｜end▁of▁sentence｜>"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture(scope="module")
def environment():
    with EnvironmentThread(EnvConfig(kernels=2, execution_timeout=5)) as thread:
        yield thread


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "n.csv"
    path.write_text("n\n1\n2\n3\n")
    return path


class ScriptedPolicy:
    """Plays fixed turn texts per episode (as token ids), recording the contexts it was shown."""

    def __init__(self, tokenizer, scripts: list[list[str]]) -> None:
        self.tokenizer = tokenizer
        self.scripts = [list(s) for s in scripts]
        self.contexts: list[list[list[int]]] = [[] for _ in scripts]
        self._episode_of: dict[int, int] = {}

    def __call__(self, contexts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[Generation]:
        out = []
        for context in contexts:
            index = next(i for i, s in enumerate(self.scripts) if s and self._matches(i, context))
            self.contexts[index].append(list(context))
            ids = self.tokenizer.encode(self.scripts[index].pop(0), add_special_tokens=False)
            out.append(Generation(ids, [-0.5] * len(ids)))
        return out

    def _matches(self, index: int, context: Sequence[int]) -> bool:
        seen = self.contexts[index]
        return not seen or list(context[: len(seen[-1])]) == seen[-1]


def test_rollout_appends_masked_observations_and_keeps_model_tokens(tokenizer, environment, table: Path) -> None:
    policy = ScriptedPolicy(tokenizer, [[CODE_TURN, ANSWER_TURN]])
    runner = EpisodeRunner(environment, tokenizer, policy, RolloutConfig(max_turns=5, max_completion_length=2000))
    prompt = runner.prompt_ids("# Instruction\nSum n.")
    [result] = runner.run([EpisodeSpec(prompt, [table])])
    assert result.stop_reason == "answer" and result.turns == 2
    assert result.feedbacks == ["6\n"]
    observation = tokenizer.encode("\n<Execute>\n6\n\n</Execute>\n", add_special_tokens=False)
    code_ids = tokenizer.encode(CODE_TURN, add_special_tokens=False)
    answer_ids = tokenizer.encode(ANSWER_TURN, add_special_tokens=False)
    assert result.completion_ids == code_ids + observation + answer_ids
    assert result.completion_mask == [1] * len(code_ids) + [0] * len(observation) + [1] * len(answer_ids)
    assert result.logprobs == [-0.5] * len(code_ids) + [0.0] * len(observation) + [-0.5] * len(answer_ids)
    assert result.text == CODE_TURN + "\n<Execute>\n6\n\n</Execute>\n" + ANSWER_TURN
    # The second turn was generated from the prompt, the first turn and the observation.
    assert policy.contexts[0][1] == prompt + code_ids + observation
    assert result.stats.executions == 1 and result.stats.kernel_time > 0


def test_episodes_run_in_parallel_kernels_with_their_own_state(tokenizer, environment, table: Path) -> None:
    scripts = [
        ["<Analyze>a</Analyze><Code>x = 1</Code>", "<Analyze>b</Analyze><Code>print(x)</Code>", "<Answer>1</Answer>"],
        ["<Analyze>a</Analyze><Code>print(x)</Code>", "<Answer>none</Answer>"],
        ["<Analyze>c</Analyze><｜end▁of▁sentence｜>"],
    ]
    policy = ScriptedPolicy(tokenizer, scripts)
    runner = EpisodeRunner(environment, tokenizer, policy, RolloutConfig(max_turns=5, max_completion_length=2000))
    prompts = [runner.prompt_ids(f"# Instruction\ntask {i}") for i in range(3)]
    results = runner.run([EpisodeSpec(p, [table]) for p in prompts])
    assert [r.stop_reason for r in results] == ["answer", "answer", "eos"]
    assert results[0].feedbacks == ["", "1\n"]
    assert results[1].feedbacks[0].endswith("NameError: name 'x' is not defined")
    assert results[2].feedbacks == [] and results[2].completion_mask == [1] * len(results[2].completion_ids)


def test_max_turns_and_max_length_end_episodes(tokenizer, environment) -> None:
    loop = "<Analyze>again</Analyze><Code>print('x' * 50)</Code>"
    runner = EpisodeRunner(environment, tokenizer, ScriptedPolicy(tokenizer, [[loop] * 10]), RolloutConfig(max_turns=3))
    [capped] = runner.run([EpisodeSpec(runner.prompt_ids("q"))])
    assert capped.stop_reason == "max_turns" and capped.turns == 3 and len(capped.feedbacks) == 3

    budget = len(tokenizer.encode(loop, add_special_tokens=False)) + 10
    runner = EpisodeRunner(
        environment, tokenizer, ScriptedPolicy(tokenizer, [[loop] * 10]), RolloutConfig(max_completion_length=budget)
    )
    [cut] = runner.run([EpisodeSpec(runner.prompt_ids("q"))])
    assert cut.stop_reason == "max_length" and len(cut.completion_ids) == budget
    assert cut.completion_mask.count(0) == 10  # the observation was cut to the budget


def test_real_tiny_model_rollout_logprobs_match_the_policy(tiny_model_path: Path, tokenizer, environment) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    sampling = SamplingConfig(temperature=0.7)
    generate = HFGenerate(lambda: contextlib.nullcontext(model), tokenizer, sampling)
    runner = EpisodeRunner(environment, tokenizer, generate, RolloutConfig(max_turns=2, max_completion_length=24))
    specs = [
        EpisodeSpec(runner.prompt_ids("# Instruction\nhello")),
        EpisodeSpec(runner.prompt_ids("# Instruction\nlonger prompt here")),
    ]
    results = runner.run(specs)
    for result in results:
        assert 0 < len(result.completion_ids) <= 24
        assert len(result.logprobs) == len(result.completion_mask) == len(result.completion_ids)
        ids = torch.tensor([result.prompt_ids + result.completion_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(result.prompt_ids) - 1 : -1] / sampling.temperature
        expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(result.completion_ids)[:, None])[:, 0]
        model_positions = torch.tensor(result.completion_mask, dtype=torch.bool)
        assert torch.allclose(torch.tensor(result.logprobs)[model_positions], expected[model_positions], atol=1e-4)


def test_the_prompt_is_the_served_models_prompt(tokenizer) -> None:
    runner = EpisodeRunner(None, tokenizer, ScriptedPolicy(tokenizer, []))  # type: ignore[arg-type]
    served = tokenizer.apply_chat_template(
        [{"role": "user", "content": "# Instruction\nQ"}], tokenize=False, add_generation_prompt=False
    )
    assert runner.prompt_ids("# Instruction\nQ") == tokenizer.encode(served, add_special_tokens=False)
    assert served.endswith("<｜Assistant｜>")


EOS = "<｜end▁of▁sentence｜>"


def test_by_default_a_turn_without_code_ends_the_episode_and_empty_output_is_observed(
    tokenizer, environment, table: Path
) -> None:
    scripts = [["<Analyze>x</Analyze><Code>x = 1</Code>", f"<Analyze>think</Analyze>{EOS}"]]
    runner = EpisodeRunner(environment, tokenizer, ScriptedPolicy(tokenizer, scripts), RolloutConfig(max_turns=5))
    [result] = runner.run([EpisodeSpec(runner.prompt_ids("q"), [table])])
    assert result.stop_reason == "eos" and result.turns == 2
    assert result.feedbacks == [""] and result.code_results == [True]
    assert "\n<Execute>\n\n</Execute>\n" in result.text


def test_the_reference_rollout_errors_on_no_code_drops_empty_output_and_cuts_after_the_answer(
    tokenizer, environment, table: Path
) -> None:
    scripts = [[
        "<Analyze>x</Analyze><Code>x = 1</Code>",
        f"<Analyze>think more</Analyze>{EOS}",
        f"<Answer>open answer{EOS}",
        f"<Answer>6</Answer>{EOS}",
    ]]
    policy = ScriptedPolicy(tokenizer, scripts)
    config = RolloutConfig.reference(max_turns=6, max_completion_length=2000)
    runner = EpisodeRunner(environment, tokenizer, policy, config)
    prompt = runner.prompt_ids("q")
    [result] = runner.run([EpisodeSpec(prompt, [table])])
    no_code = "\n<Execute>\n[Error]:\nNo code is provided, so the execution results is empty.\n</Execute>\n"
    assert result.stop_reason == "answer" and result.turns == 4
    # The empty output appended nothing; the turns without code (the open answer one
    # too) were told there was no code; each counts as a failed execution.
    assert result.text == (
        "<Analyze>x</Analyze><Code>x = 1</Code>"
        f"<Analyze>think more</Analyze>{EOS}{no_code}"
        f"<Answer>open answer{EOS}{no_code}"
        f"<Answer>6</Answer>{EOS}"
    )
    assert result.code_results == [False, False, False]
    assert result.feedbacks == ["", NO_CODE_FEEDBACK, NO_CODE_FEEDBACK]


def test_text_after_the_closing_answer_is_cut_in_the_reference_rollout(tokenizer, environment) -> None:
    policy = ScriptedPolicy(tokenizer, [["<Analyze>a</Analyze><Answer>6</Answer> and more text"]])
    runner = EpisodeRunner(environment, tokenizer, policy, RolloutConfig.reference(max_completion_length=500))
    [result] = runner.run([EpisodeSpec(runner.prompt_ids("q"))])
    assert result.stop_reason == "answer" and result.text == "<Analyze>a</Analyze><Answer>6</Answer>"
    assert len(result.logprobs) == len(result.completion_ids) == len(result.completion_mask)
