"""The tiny curriculum end to end, the 2-process path, the CUDA path and the CLI's errors.

The curriculum runs once per session through the documented command
(``python -m training curriculum --config training/configs/tiny_cpu.yaml``): synthesis in
real kernels, two SFT stages, then GRPO whose rollouts execute in real kernels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from training.metrics import read_metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "training" / "configs" / "tiny_cpu.yaml"
STAGES = ["1-single-ability", "2a-cold-start", "2b-grpo"]


def run_cli(
    *args: str, timeout: float = 600, cpu_only: bool = False, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(extra_env or {})}
    if cpu_only:
        env["CUDA_VISIBLE_DEVICES"] = ""  # GPUs, if there are any, stay hidden
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def parameters(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    import torch

    return any(not torch.equal(before[name], after[name]) for name in before)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("tiny-curriculum") / "run"
    result = run_cli("curriculum", "--config", str(TINY_CONFIG), "--output-dir", str(output), cpu_only=True)
    if result.returncode != 0:
        pytest.fail(f"the tiny curriculum failed:\n{result.stderr[-4000:]}")
    return output


@pytest.mark.slow
def test_tiny_curriculum_runs_every_stage_and_writes_metrics(tiny_run: Path) -> None:
    report = json.loads((tiny_run / "data" / "synth_report.json").read_text())
    assert report["verified"] == report["tasks"] > 0
    records = read_metrics(tiny_run / "metrics.jsonl")
    assert [r["stage"] for r in records if r.get("event") == "train_begin"] == STAGES
    assert all(r["device"] == "cpu" for r in records if r.get("event") == "train_begin")
    for stage in STAGES:
        assert (tiny_run / stage / "final" / "model.safetensors").exists()
    sft_losses = [r["loss"] for r in records if r["stage"] == "2a-cold-start" and "loss" in r]
    assert sft_losses[-1] < sft_losses[0] / 4  # the cold start learned the trajectories
    grpo = [r for r in records if r["stage"] == "2b-grpo" and "reward" in r]
    assert len(grpo) == 2
    for key in ("reward", "reward/format_rate", "reward/answer_accuracy", "episode/turns", "episode/kernel_time"):
        assert all(isinstance(r[key], float) for r in grpo), key


@pytest.mark.slow
def test_grpo_rollouts_executed_code_in_real_kernels(tiny_run: Path) -> None:
    grpo = [r for r in read_metrics(tiny_run / "metrics.jsonl") if r["stage"] == "2b-grpo" and "reward" in r]
    assert sum(r["episode/executions"] for r in grpo) > 0
    assert sum(r["episode/kernel_time"] for r in grpo) > 0
    assert all(r["episode/turns"] >= 1 for r in grpo)


@pytest.mark.slow
def test_every_stage_changes_the_parameters(tiny_run: Path) -> None:
    from training.tiny import default_tiny_path

    previous = parameters(default_tiny_path())
    for stage in STAGES:
        current = parameters(tiny_run / stage / "final")
        assert changed(previous, current), stage
        previous = current


def launch_two_processes(kind: str, config: Path) -> subprocess.CompletedProcess[str]:
    # The CPU (gloo) path on any machine: GPUs, if there are any, stay hidden.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO_ROOT / "tests" / "training" / "launched_stage.py"), kind, str(config),
    ]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_two_process_gloo_run_keeps_ranks_in_sync(kind: str, tiny_run: Path, tmp_path: Path) -> None:
    output = tmp_path / kind
    model = tiny_run / "2a-cold-start" / "final"
    if kind == "sft":
        body = (
            f"model: {model}\noutput_dir: {output}\ndata: [{tiny_run / 'data' / 'sft_agent.jsonl'}]\n"
            "max_steps: 2\nper_device_train_batch_size: 2\nlearning_rate: 1.0e-3\nmax_length: 1024\n"
        )
    else:
        body = (
            f"model: {model}\noutput_dir: {output}\ntasks: [{tiny_run / 'data' / 'rl_tasks.jsonl'}]\n"
            "learning_rate: 1.0e-3\nnum_generations: 8\nper_device_train_batch_size: 4\nmax_steps: 1\n"
            "temperature: 1.0\nrollout: {max_turns: 4, max_completion_length: 512, max_turn_tokens: 256}\n"
            "env: {kernels: 4, execution_timeout: 20}\n"
        )
    config = tmp_path / f"{kind}.yaml"
    config.write_text(body)
    result = launch_two_processes(kind, config)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((output / f"rank{i}.json").read_text()) for i in range(2)]
    assert all(r["distributed_type"] == "DistributedType.MULTI_CPU" for r in ranks)
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" for r in ranks)
    records = [r for r in read_metrics(output / "metrics.jsonl") if "loss" in r]
    assert records, "no metrics were written"
    if kind == "grpo":
        assert "episode/executions" in records[0] and "reward/format_rate" in records[0]
        # Rewards that differ within the group are what makes a GRPO step move the weights.
        assert records[0]["reward_std"] > 0
    assert changed(parameters(model), parameters(output / "final"))
    assert ranks[0]["parameters"] == ranks[1]["parameters"]  # gradients were all-reduced


@pytest.mark.slow
def test_a_grpo_step_rolls_out_on_kernels_of_a_gateway(tiny_run: Path, kernel_gateway: Any, tmp_path: Path) -> None:
    output = tmp_path / "grpo"
    config = tmp_path / "grpo.yaml"
    config.write_text(
        f"model: {tiny_run / '2a-cold-start' / 'final'}\noutput_dir: {output}\n"
        f"tasks: [{tiny_run / 'data' / 'rl_tasks.jsonl'}]\n"
        # The curriculum's own GRPO settings (tiny_cpu.yaml), kernels on the gateway.
        "learning_rate: 1.0e-3\nnum_generations: 8\nper_device_train_batch_size: 8\nmax_steps: 2\n"
        "temperature: 0.7\nrollout: {max_turns: 4, max_completion_length: 512, max_turn_tokens: 256}\n"
        f"env: {{kernels: 4, execution_timeout: 20, gateway_url: '{kernel_gateway.url}'}}\n"
    )
    # The token comes from the environment, as the README says, not from the config file.
    result = run_cli(
        "grpo", "--config", str(config), cpu_only=True,
        extra_env={"JUPYTER_GATEWAY_AUTH_TOKEN": kernel_gateway.token},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    records = [r for r in read_metrics(output / "metrics.jsonl") if "reward" in r]
    assert len(records) == 2
    assert sum(r["episode/executions"] for r in records) > 0, records
    assert sum(r["episode/kernel_time"] for r in records) > 0, records


@pytest.mark.slow
@pytest.mark.gpu
def test_tiny_curriculum_runs_on_a_cuda_gpu(tmp_path: Path) -> None:
    output = tmp_path / "run"
    result = run_cli("curriculum", "--config", str(TINY_CONFIG), "--output-dir", str(output))
    assert result.returncode == 0, result.stderr[-4000:]
    records = read_metrics(output / "metrics.jsonl")
    begins = [r for r in records if r.get("event") == "train_begin"]
    assert [r["stage"] for r in begins] == STAGES
    assert all(r["device"].startswith("cuda") for r in begins)
    assert any(r.get("episode/executions", 0) > 0 for r in records if r["stage"] == "2b-grpo")


def test_bad_config_is_one_line_on_stderr(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "output_dir: out\nstages:\n  - kind: grpo\n    tasks: [t.jsonl]\n    rollout: {max_turn: 3}\n"
    )
    result = run_cli("curriculum", "--config", str(config), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {config}: stages[0].rollout: unknown key 'max_turn' (known: max_turns, "
        "max_completion_length, max_turn_tokens, answer_end, no_code_turn, empty_output)"
    ]
    config.write_text("model: tiny\noutput_dir: out\ndata: [x.jsonl]\nlearning_rate: fast\n")
    result = run_cli("sft", "--config", str(config), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {config}: learning_rate: expected a number, got 'fast'"
