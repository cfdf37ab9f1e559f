"""The training environment on a real Jupyter Kernel Gateway: a rollout wave whose episodes run
their code in gateway kernels, each in its own folder made on the kernel's side."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.env import EnvConfig, EnvironmentThread
from training.episode import EpisodeRunner, EpisodeSpec, RolloutConfig

from ..conftest import RunningGateway
from .test_episode import ScriptedPolicy


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def test_a_rollout_wave_runs_on_gateway_kernels_with_shipped_files(
    tokenizer, kernel_gateway: RunningGateway, tmp_path: Path
) -> None:
    tables = []
    for i in range(4):
        table = tmp_path / f"t{i}" / "n.csv"
        table.parent.mkdir()
        table.write_text("n\n" + "\n".join(str(i * 10 + k) for k in range(3)) + "\n")
        tables.append(table)
    where = f"import os\nprint(os.getcwd().startswith({str(kernel_gateway.kernel_side)!r}), 'before' in dir())"
    scripts = [
        [
            "<Code>\nimport pandas as pd\nbefore = 1\nprint(pd.read_csv('n.csv')['n'].sum())\n</Code>",
            f"<Code>\n{where}\n</Code>",
            "<Answer>done</Answer><｜end▁of▁sentence｜>",
        ]
        for _ in range(4)
    ]
    config = EnvConfig(
        kernels=2, execution_timeout=20, gateway_url=kernel_gateway.url, gateway_token=kernel_gateway.token
    )
    with EnvironmentThread(config) as environment:
        assert environment.env.pool.gateway is not None and environment.env.pool.root is None
        # Tell the episodes apart by their prompts: the policy matches contexts per script.
        policy = ScriptedPolicy(tokenizer, scripts)
        runner = EpisodeRunner(environment, tokenizer, policy, RolloutConfig(max_turns=4, max_completion_length=2000))
        specs = [EpisodeSpec(runner.prompt_ids(f"# Instruction\ntask {i}"), [tables[i]]) for i in range(4)]
        results = runner.run(specs)  # 4 episodes on 2 kernels: two waves
    sums = sorted(int(r.feedbacks[0]) for r in results)
    assert sums == [3, 33, 63, 93]  # each episode read its own shipped table
    # Each episode ran in a folder on the kernel's side, with the state of its own first block.
    assert all(r.feedbacks[1] == "True True\n" for r in results)
    assert all(r.stop_reason == "answer" and r.stats.executions == 2 for r in results)


def test_a_malformed_gateway_url_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="env.gateway_url: the gateway URL must look like http://host:port"):
        EnvConfig(gateway_url="gateway:8888")
    with pytest.raises(ValueError, match="set env.gateway_url too"):
        EnvConfig(shared_workdir="/shared")
