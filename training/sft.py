"""Supervised stages on TRL's ``SFTTrainer``: single-ability SFT (1) and agentic cold start (2a).

Owns ``SFTStageConfig`` and ``run_sft``: messages-JSONL trajectories are tokenized with
the model's chat template and the ``<Execute>`` spans masked (``data.tokenize_trajectory``),
handed to ``SFTTrainer`` as ``input_ids``/``labels``, trained, and the final model and
tokenizer saved to ``{output_dir}/final``. The same code runs on a CPU, one GPU, or many
under ``accelerate launch`` (DDP, DeepSpeed ZeRO-3 through ``trainer.deepspeed``).

Must not roll out or execute code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import load_sft_rows, tokenize_trajectory

log = logging.getLogger(__name__)

FINAL_DIR = "final"


@dataclass
class SFTStageConfig:
    """One supervised stage (TRL ``SFTConfig`` underneath)."""

    model: str
    """A model folder (``save_pretrained`` layout), ``tiny`` for the locally built tiny
    model, or a hub id where the hub is reachable."""
    output_dir: str
    """Checkpoints, ``metrics.jsonl`` and the trained model (``final/``) go here."""
    data: list[str]
    """messages-JSONL files (paths, or ``shared:…``)."""
    name: str = "sft"
    """Stage name stamped on every metrics record."""
    learning_rate: float = 5e-5
    """Reference: 5e-5 for single-ability SFT, 5e-6 for the cold start."""
    max_length: int = 8192
    """Tokens per trajectory; longer ones are truncated (reference: 8k, then 32k)."""
    num_train_epochs: float = 1.0
    max_steps: int = -1
    """Optimizer steps; -1 runs ``num_train_epochs``."""
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    warmup_steps: float = 0.0
    """Warm-up steps (a value below 1 is a share of all steps)."""
    lr_scheduler_type: str = "cosine"
    logging_steps: int = 1
    seed: int = 0
    bf16: bool | None = None
    """bf16 mixed precision; None: on where a GPU supports it, off on CPU (fp32)."""
    dataset_num_proc: int | None = None
    """Processes that tokenize the data (None: this one)."""
    save_final: bool = True
    """Save the trained model and tokenizer to ``{output_dir}/final``."""
    lora: dict[str, Any] | None = None
    """Train a LoRA adapter instead of every weight: ``peft.LoraConfig`` fields
    (``r``, ``lora_alpha``, ``target_modules``, …). None trains the full model."""
    prepare_base: bool = False
    """Starting from a base model (e.g. DeepSeek-R1-0528-Qwen3-8B): add the ten tags as
    tokens (embeddings resized, new rows initialised at the mean) when the tokenizer lacks
    them. The base model's own chat template and end-of-sentence token stay, as the
    reference trained (ms-swift's ``deepseek_r1`` template is the base's layout)."""
    chat_template: str | None = None
    """Replace the tokenizer's chat template for this stage and the model it saves:
    ``deepanalyze`` (DeepSeek's layout plus the ``execute`` role inside the assistant turn,
    ``tiny.CHAT_TEMPLATE``) or the path of a Jinja file. None keeps the model's own."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """Further ``trl.SFTConfig`` fields as they are (``bf16``, ``gradient_checkpointing``,
    ``deepspeed``, ``save_steps``, ``report_to``, …)."""

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("data: name at least one messages-JSONL file")
        if self.max_length < 16:
            raise ValueError(f"max_length is too small: {self.max_length}")


def chat_template_text(setting: str) -> str:
    """The template a ``chat_template`` setting names: ``deepanalyze`` or a Jinja file."""
    from .tiny import CHAT_TEMPLATE

    if setting == "deepanalyze":
        return CHAT_TEMPLATE
    path = Path(setting).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(
            f"chat_template: cannot read {path} ({exc.strerror}); use 'deepanalyze' or a Jinja file"
        ) from None


def prepare_deepanalyze_model(model_path: str, chat_template: str | None = None) -> tuple[Any, Any]:
    """The tokenizer and model (or its path, when nothing had to change) with DeepAnalyze's vocabulary.

    Adds the tags missing from the tokenizer and resizes the embeddings to match. The
    model's chat template and end token are kept (``chat_template`` replaces the
    template when given); a tokenizer without any template is refused.
    """
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .tiny import TAG_TOKENS

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if chat_template is not None:
        tokenizer.chat_template = chat_template_text(chat_template)
    if not tokenizer.chat_template:
        raise ValueError(f"{model_path}: the tokenizer has no chat template; set chat_template")
    if tokenizer.eos_token is None:
        raise ValueError(f"{model_path}: the tokenizer has no end-of-sentence token")
    vocabulary = tokenizer.get_vocab()
    missing = [tag for tag in TAG_TOKENS if tag not in vocabulary]
    if not missing:
        return tokenizer, model_path
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in missing])
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto")
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    log.info("%s: added %d tag tokens", model_path, len(missing))
    return tokenizer, model


def lora_config(settings: dict[str, Any] | None) -> Any:
    """A ``peft.LoraConfig`` for causal language modelling, or None."""
    if settings is None:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **settings)


def resolve_model(model: str) -> str:
    """``tiny`` → the cached tiny model's folder; anything else as given."""
    if model == "tiny":
        from .tiny import build_tiny_model

        return str(build_tiny_model())
    return model


def device_arguments(bf16: bool | None) -> dict[str, Any]:
    """Trainer device and precision for the machine at hand: one config runs on CPU or GPU.

    Without CUDA, ``use_cpu`` makes accelerate pick the CPU, and under a multi-process
    launch (``accelerate launch --multi_gpu --num_processes N``) the gloo backend.
    """
    import torch

    has_cuda = torch.cuda.is_available()
    supported = has_cuda and torch.cuda.is_bf16_supported()
    if bf16 and not supported:
        raise ValueError("bf16: true needs a GPU with bf16 support; remove it to train in fp32")
    return {"bf16": supported if bf16 is None else bf16, "fp16": False, "use_cpu": not has_cuda}


def tokenized_dataset(rows: list[dict[str, Any]], tokenizer: Any, num_proc: int | None = None):
    """A ``datasets.Dataset`` of ``input_ids`` and ``labels`` (-100 off the loss)."""
    from datasets import Dataset

    dataset = Dataset.from_dict({"messages": [row["messages"] for row in rows]})

    def encode(example: dict[str, Any]) -> dict[str, list[int]]:
        tokenized = tokenize_trajectory(example["messages"], tokenizer)
        return {"input_ids": tokenized.input_ids, "labels": tokenized.labels()}

    return dataset.map(encode, remove_columns=["messages"], num_proc=num_proc, desc="Tokenizing trajectories")


def run_sft(config: SFTStageConfig, *, callbacks: Sequence[Any] = ()) -> Path:
    """Train one supervised stage; returns the folder of the trained model.

    ``callbacks`` are further ``TrainerCallback`` objects (the metrics log is always on).
    """
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from .metrics import METRICS_FILE, MetricsLog

    model_path = resolve_model(config.model)
    output_dir = Path(config.output_dir)
    model: Any = model_path
    if config.prepare_base:
        tokenizer, model = prepare_deepanalyze_model(model_path, config.chat_template)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        if config.chat_template is not None:
            tokenizer.chat_template = chat_template_text(config.chat_template)
    rows = load_sft_rows(config.data)
    train_dataset = tokenized_dataset(rows, tokenizer, config.dataset_num_proc)
    arguments = {
        "output_dir": str(output_dir),
        "learning_rate": config.learning_rate,
        "max_length": config.max_length,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "warmup_steps": config.warmup_steps,
        "lr_scheduler_type": config.lr_scheduler_type,
        "logging_steps": config.logging_steps,
        "seed": config.seed,
        "save_strategy": "no",
        "report_to": "none",
        "dataset_num_proc": config.dataset_num_proc,
        **device_arguments(config.bf16),
    }
    arguments.update(config.trainer)
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**arguments),
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config.lora),
        callbacks=[MetricsLog(output_dir / METRICS_FILE, config.name), *callbacks],
    )
    log.info("SFT stage %r: %d trajectories, model %s", config.name, len(train_dataset), model_path)
    trainer.train()
    final = output_dir / FINAL_DIR
    if config.save_final:
        save_final(trainer, tokenizer, final)
    return final


def save_final(trainer: Any, tokenizer: Any, folder: Path) -> None:
    """The trained model (gathered from ZeRO-3 shards) and its tokenizer, for the next stage."""
    trainer.save_model(str(folder))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(folder))
    trainer.accelerator.wait_for_everyone()
