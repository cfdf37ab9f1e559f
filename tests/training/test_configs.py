"""The shipped configs load, and every pass-through trainer key is a real TRL field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from training.configuration import ConfigError, load_config, load_yaml
from training.curriculum import load_curriculum
from training.grpo import GRPOStageConfig
from training.sft import SFTStageConfig
from training.synth import SynthConfig

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def trl_fields(cls_name: str) -> set[str]:
    import trl

    return {f.name for f in dataclasses.fields(getattr(trl, cls_name))}


def test_tiny_curriculum_config_has_synth_and_three_stages() -> None:
    config = load_curriculum(CONFIGS / "tiny_cpu.yaml", output_dir="/tmp/x")
    assert config.synth is not None and config.synth.output_dir == "/tmp/x/data"
    assert [type(s) for s in config.stages] == [SFTStageConfig, SFTStageConfig, GRPOStageConfig]
    assert config.stages[1].model == "/tmp/x/1-single-ability/final"
    assert config.stages[2].tasks == ["/tmp/x/data/rl_tasks.jsonl"]


@pytest.mark.parametrize(
    ("name", "cls", "trl_name"),
    [
        ("1_single_ability.yaml", SFTStageConfig, "SFTConfig"),
        ("2a_cold_start.yaml", SFTStageConfig, "SFTConfig"),
        ("2b_grpo.yaml", GRPOStageConfig, "GRPOConfig"),
    ],
)
def test_8b_stage_configs_are_valid(name: str, cls: type, trl_name: str) -> None:
    config = load_config(cls, CONFIGS / "8b" / name)
    assert set(config.trainer) <= trl_fields(trl_name)


def test_8b_synth_and_accelerate_configs_are_valid() -> None:
    synth = load_config(SynthConfig, CONFIGS / "8b" / "synth.yaml")
    assert synth.teacher.kind == "openai"
    accelerate = load_yaml(CONFIGS / "8b" / "accelerate_zero3.yaml")
    assert accelerate["distributed_type"] == "DEEPSPEED" and accelerate["deepspeed_config"]["zero_stage"] == 3
    assert accelerate["num_processes"] == 16


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(SFTStageConfig, tmp_path / "nope.yaml")


def test_the_8b_grpo_config_is_the_reference_recipe() -> None:
    from training.episode import RolloutConfig
    from training.rewards import RewardOptions

    config = load_config(GRPOStageConfig, CONFIGS / "8b" / "2b_grpo.yaml")
    accelerate = load_yaml(CONFIGS / "8b" / "accelerate_zero3.yaml")
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps
    rollouts_per_step = per_step * accelerate["num_processes"]
    assert rollouts_per_step // config.num_generations == 256 and config.num_generations == 5
    assert config.rollout == RolloutConfig.reference(max_turns=30, max_completion_length=32768)
    assert config.env.parity and config.env.execution_timeout == 10
    assert config.reward == RewardOptions.reference()
    assert (config.learning_rate, config.beta, config.top_p) == (5e-7, 0.0, 0.95)
