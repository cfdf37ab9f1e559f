"""Agentic RL (stage 2b) on TRL's ``GRPOTrainer``, rolling out in live kernels.

Owns ``GRPOStageConfig`` and ``run_grpo``: RL task rows become prompts (the task's first
message); TRL's ``rollout_func`` runs ``episode.EpisodeRunner`` against the kernel
environment (``env.EnvironmentThread``) with the generation backend of the device
(HF ``generate`` on CPU; vLLM colocate or server mode on GPUs) and hands back prompt and
completion ids, sampling logprobs and the environment mask (observation tokens are never
trained on). ``TrajectoryReward`` scores each trajectory with ``rewards.score_trajectory``
and logs, through TRL's ``log_metric``, the format rate, the answer accuracy and the
episodes' statistics (turns, executions, error rate, kernel time), hence ``metrics.jsonl``.

Must not implement the policy-gradient loss (TRL does) nor parse the protocol (``protocol``
and ``rewards`` do).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .data import RLTask, by_difficulty, load_rl_tasks, task_first_message
from .env import EnvConfig, EnvironmentThread
from .episode import EpisodeResult, EpisodeRunner, EpisodeSpec, RolloutConfig
from .generation import HFGenerate, SamplingConfig, VLLMColocateGenerate, VLLMServerGenerate
from .rewards import Judge, RewardOptions, openai_judge, score_trajectory
from .sft import FINAL_DIR, device_arguments, lora_config, resolve_model, save_final

log = logging.getLogger(__name__)


@dataclass
class JudgeConfig:
    """The LLM judge: any OpenAI-compatible endpoint."""

    base_url: str
    """E.g. ``http://judge-node:8000/v1``."""
    model: str
    """Served model name."""
    api_key_env: str = "DEEPANALYZE_JUDGE_API_KEY"
    """Environment variable holding the API key (never the key itself in a config)."""
    max_tokens: int = 1024


@dataclass
class GRPOStageConfig:
    """The RL stage (TRL ``GRPOConfig`` underneath)."""

    model: str
    """The cold-started model folder, or ``tiny``."""
    output_dir: str
    tasks: list[str]
    """RL-JSONL files of ``data.RLTask`` rows."""
    name: str = "grpo"
    learning_rate: float = 5e-7
    """Reference: 5e-7."""
    num_generations: int = 5
    """Rollouts per prompt (the group GRPO normalises over; reference: 5)."""
    per_device_train_batch_size: int = 5
    """Rollouts per device per step; with the processes, a multiple of ``num_generations``."""
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 1.0
    max_steps: int = -1
    beta: float = 0.0
    """KL coefficient; the reference trains without a KL loss."""
    loss_type: str = "dapo"
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    order_by_difficulty: bool = True
    """Feed tasks easiest first (no shuffling): the curriculum within the stage."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    judge: JudgeConfig | None = None
    """None: rewards without the judged parts."""
    reward: RewardOptions = field(default_factory=RewardOptions)
    """How trajectories are scored where we and the reference differ (``rewards.RewardOptions``)."""
    generation: Literal["auto", "hf", "vllm-colocate", "vllm-server"] = "auto"
    """Rollout engine; ``auto`` is ``hf`` unless ``trainer.use_vllm`` is set."""
    generation_batch_size: int = 8
    """Episodes per batched ``generate`` call of the HF backend."""
    logging_steps: int = 1
    seed: int = 0
    bf16: bool | None = None
    """bf16 mixed precision; None: on where a GPU supports it, off on CPU."""
    save_final: bool = True
    lora: dict[str, Any] | None = None
    """Train a LoRA adapter: ``peft.LoraConfig`` fields; None trains every weight."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """Further ``trl.GRPOConfig`` fields as they are (``use_vllm``, ``vllm_mode``,
    ``vllm_server_base_url``, ``vllm_gpu_memory_utilization``, ``deepspeed``,
    ``gradient_checkpointing``, …)."""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks: name at least one RL-JSONL file")
        if self.num_generations < 2:
            raise ValueError("num_generations must be at least 2 (GRPO compares rollouts of one prompt)")


def prompt_text(prompt: Any) -> str:
    """The first message a dataset prompt holds (conversational or plain)."""
    return prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)


class TaskIndex:
    """Finds the task behind a prompt (TRL hands ``rollout_func`` the prompts only)."""

    def __init__(self, tasks: Sequence[RLTask], bases: dict[str, Path]) -> None:
        self.tasks = {task.id: task for task in tasks}
        self.bases = bases
        self.by_prompt: dict[str, RLTask] = {}
        for task in tasks:
            message = task_first_message(task, bases.get(task.id))
            other = self.by_prompt.get(message)
            if other is not None:
                raise ValueError(f"tasks {other.id} and {task.id} have the same question and files")
            self.by_prompt[message] = task

    def for_prompt(self, prompt: Any) -> RLTask:
        try:
            return self.by_prompt[prompt_text(prompt)]
        except KeyError:
            raise KeyError("a prompt matches no RL task (was the dataset built from these tasks?)") from None

    def files(self, task: RLTask) -> list[Path]:
        return task.resolved_files(self.bases.get(task.id))

    def dataset(self, order_by_difficulty: bool):
        from datasets import Dataset

        tasks = list(self.tasks.values())
        if order_by_difficulty:
            tasks = by_difficulty(tasks)
        prompts = {task.id: message for message, task in self.by_prompt.items()}
        return Dataset.from_dict(
            {
                "prompt": [[{"role": "user", "content": prompts[t.id]}] for t in tasks],
                "task_id": [t.id for t in tasks],
            }
        )


class KernelRollout:
    """TRL ``rollout_func``: prompts → episodes in live kernels → token-space results."""

    def __init__(
        self, config: GRPOStageConfig, index: TaskIndex, tokenizer: Any, environment: EnvironmentThread
    ) -> None:
        self.config = config
        self.index = index
        self.tokenizer = tokenizer
        self.environment = environment
        self._runner: EpisodeRunner | None = None
        self.episodes_run = 0

    def _generate_fn(self, trainer: Any):
        from trl.models.utils import unwrap_model_for_generation

        sampling = SamplingConfig(self.config.temperature, self.config.top_p, self.config.top_k)
        engine = self.config.generation
        if engine == "auto":
            engine = "hf"
            if trainer.args.use_vllm:
                engine = f"vllm-{trainer.args.vllm_mode}"
        if engine == "vllm-colocate":
            return VLLMColocateGenerate(trainer.vllm_generation.llm, self.tokenizer, sampling)
        if engine == "vllm-server":
            return VLLMServerGenerate(
                self.tokenizer,
                sampling,
                base_url=trainer.args.vllm_server_base_url,
                host=trainer.args.vllm_server_host,
                port=trainer.args.vllm_server_port,
                timeout=trainer.args.vllm_server_timeout,
            )

        def model_context():
            return unwrap_model_for_generation(
                trainer.model_wrapped,
                trainer.accelerator,
                gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            )

        return HFGenerate(model_context, self.tokenizer, sampling, batch_size=self.config.generation_batch_size)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        if self._runner is None:
            self._runner = EpisodeRunner(
                self.environment, self.tokenizer, self._generate_fn(trainer), self.config.rollout
            )
        specs = []
        for number, prompt in enumerate(prompts):
            task = self.index.for_prompt(prompt)
            # The episode's working folder: unique per process and episode, safe as a file name.
            label = f"{task.id}-{trainer.accelerator.process_index}-{self.episodes_run + number}"
            name = re.sub(r"[^\w.-]", "_", label)
            specs.append(EpisodeSpec(self._runner.prompt_ids(prompt_text(prompt)), self.index.files(task), name))
        self.episodes_run += len(specs)
        results = self._runner.run(specs)
        return {
            "prompt_ids": [r.prompt_ids for r in results],
            "completion_ids": [r.completion_ids for r in results],
            "logprobs": [r.logprobs for r in results],
            "env_mask": [r.completion_mask for r in results],
            "trajectory": [r.text for r in results],
            "feedbacks": [r.feedbacks for r in results],
            "code_results": [r.code_results for r in results],
            "turns": [r.turns for r in results],
            "episode": [episode_summary(r) for r in results],
        }


def episode_summary(result: EpisodeResult) -> dict[str, float]:
    """Per-episode numbers the reward function logs as metrics."""
    stats = result.stats
    failed = stats.errors + stats.timeouts
    return {
        "turns": float(result.turns),
        "executions": float(stats.executions),
        "execution_error_rate": failed / stats.executions if stats.executions else 0.0,
        "kernel_time": stats.kernel_time,
        "finished": float(result.finished),
        "rollout_seconds": result.duration,
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class TrajectoryReward:
    """TRL reward function: ``rewards.score_trajectory`` on each rollout's whole trajectory."""

    __name__ = "deepanalyze"

    def __init__(self, index: TaskIndex, judge: Judge | None = None, options: RewardOptions | None = None) -> None:
        self.index = index
        self.judge = judge
        self.options = options or RewardOptions()

    def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        task_id: list[str],
        trajectory: list[str],
        feedbacks: list[list[str]],
        code_results: list[list[bool]],
        turns: list[int],
        episode: list[dict[str, float]],
        log_metric: Any = None,
        **_: Any,
    ) -> list[float]:
        rewards, format_ok, answers = [], [], []
        for tid, text, fbs, passed, count in zip(task_id, trajectory, feedbacks, code_results, turns, strict=True):
            task = self.index.tasks[tid]
            breakdown = score_trajectory(
                text,
                task.reward,
                ground_truth=task.ground_truth,
                question=task.question,
                feedbacks=fbs,
                code_results=passed,
                turns=count,
                judge=self.judge,
                options=self.options,
            )
            rewards.append(breakdown.reward)
            format_ok.append(float(breakdown.format_ok))
            if task.reward.kind in ("qa", "dabench"):
                answers.append(breakdown.answer or 0.0)
        if log_metric is not None:
            # Every process logs the same names in the same order: TRL gathers them.
            log_metric("reward/format_rate", _mean(format_ok))
            log_metric("reward/answer_accuracy", _mean(answers))
            for key in sorted(episode[0]):
                log_metric(f"episode/{key}", _mean([e[key] for e in episode]))
        return rewards


def make_judge(config: JudgeConfig | None) -> Judge | None:
    import os

    if config is None:
        return None
    return openai_judge(
        config.base_url, config.model, api_key=os.environ.get(config.api_key_env, ""), max_tokens=config.max_tokens
    )


def grpo_arguments(config: GRPOStageConfig) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "output_dir": config.output_dir,
        "learning_rate": config.learning_rate,
        "num_generations": config.num_generations,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "beta": config.beta,
        "loss_type": config.loss_type,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "max_completion_length": config.rollout.max_completion_length,
        "shuffle_dataset": not config.order_by_difficulty,
        "logging_steps": config.logging_steps,
        "seed": config.seed,
        "save_strategy": "no",
        "report_to": "none",
        **device_arguments(config.bf16),
    }
    arguments.update(config.trainer)
    return arguments


def run_grpo(config: GRPOStageConfig, *, callbacks: Sequence[Any] = ()) -> Path:
    """Train the RL stage; returns the folder of the trained model.

    ``callbacks`` are further ``TrainerCallback`` objects (the metrics log is always on).
    """
    import os

    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from .metrics import METRICS_FILE, MetricsLog

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is flagged experimental
    model_path = resolve_model(config.model)
    output_dir = Path(config.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tasks, bases = load_rl_tasks(config.tasks)
    index = TaskIndex(tasks, bases)
    reward = TrajectoryReward(index, make_judge(config.judge), config.reward)
    with EnvironmentThread(config.env) as environment:
        rollout = KernelRollout(config, index, tokenizer, environment)
        trainer = GRPOTrainer(
            model=model_path,
            reward_funcs=[reward],
            args=GRPOConfig(**grpo_arguments(config)),
            train_dataset=index.dataset(config.order_by_difficulty),
            processing_class=tokenizer,
            rollout_func=rollout,
            peft_config=lora_config(config.lora),
            callbacks=[MetricsLog(output_dir / METRICS_FILE, config.name), *callbacks],
        )
        log.info("GRPO stage %r: %d tasks, %s", config.name, len(tasks), asdict(config.env))
        trainer.train()
        final = output_dir / FINAL_DIR
        if config.save_final:
            save_final(trainer, tokenizer, final)
    return final
