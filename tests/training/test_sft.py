"""Starting SFT from a base model whose tokenizer lacks the DeepAnalyze tags."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data import sft_row, tokenize_trajectory, write_jsonl
from training.sft import SFTStageConfig, prepare_deepanalyze_model, run_sft
from training.tiny import (
    ASSISTANT,
    BASE_CHAT_TEMPLATE,
    BOS,
    CHAT_TEMPLATE,
    EOS,
    TAG_TOKENS,
    USER,
    TinySpec,
    build_tiny_tokenizer,
)

TRAJECTORY = (
    "<Analyze>Add.</Analyze>\n<Code>\n```python\nprint(1 + 1)\n```\n</Code>\n"
    "<Execute>\n2\n\n</Execute>\n<Answer>2</Answer>"
)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model saved like a base model: no tags, DeepSeek's template without `execute`."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder = tmp_path_factory.mktemp("base")
    tokenizer = build_tiny_tokenizer(TinySpec(), tags=False)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    Qwen3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_prepare_adds_the_tags_and_keeps_the_base_template_and_end_token(base_model: Path) -> None:
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(base_model)
    tokenizer, model = prepare_deepanalyze_model(str(base_model))
    assert all(len(tokenizer.encode(tag, add_special_tokens=False)) == 1 for tag in TAG_TOKENS)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert (tokenizer.chat_template, tokenizer.eos_token) == (base.chat_template, EOS)
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": TRAJECTORY}]
    tokenized = tokenize_trajectory(messages, tokenizer)
    # DeepSeek's layout, as ms-swift's deepseek_r1 template renders it (no <think> prefix).
    assert tokenizer.decode(tokenized.input_ids) == f"{BOS}{USER}q{ASSISTANT}{TRAJECTORY}{EOS}"
    trained = tokenizer.decode([t for t, m in zip(tokenized.input_ids, tokenized.loss_mask, strict=True) if m])
    assert "<Execute>" not in trained and trained.endswith(f"<Answer>2</Answer>{EOS}")


def test_a_chat_template_override_is_explicit(base_model: Path, tmp_path: Path) -> None:
    tokenizer, _ = prepare_deepanalyze_model(str(base_model), "deepanalyze")
    assert tokenizer.chat_template == CHAT_TEMPLATE
    custom = tmp_path / "template.jinja"
    custom.write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    tokenizer, _ = prepare_deepanalyze_model(str(base_model), str(custom))
    assert tokenizer.chat_template == custom.read_text()
    with pytest.raises(ValueError, match="cannot read"):
        prepare_deepanalyze_model(str(base_model), str(tmp_path / "missing.jinja"))


def test_sft_from_a_base_model_saves_a_deepanalyze_vocabulary(base_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = tmp_path / "d.jsonl"
    write_jsonl(data, [sft_row(f"Add {i}.", [], TRAJECTORY) for i in range(4)])
    final = run_sft(
        SFTStageConfig(
            model=str(base_model), output_dir=str(tmp_path / "out"), data=[str(data)], max_steps=2,
            per_device_train_batch_size=2, max_length=256, prepare_base=True,
        )
    )
    tokenizer = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert all(len(tokenizer.encode(tag, add_special_tokens=False)) == 1 for tag in TAG_TOKENS)
    assert tokenizer.chat_template == BASE_CHAT_TEMPLATE and tokenizer.eos_token == EOS
    assert model.config.eos_token_id == tokenizer.eos_token_id


def test_lora_stage_trains_an_adapter_only(tiny_model_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    write_jsonl(data, [sft_row(f"Add {i}.", [], TRAJECTORY) for i in range(4)])
    final = run_sft(
        SFTStageConfig(
            model=str(tiny_model_path), output_dir=str(tmp_path / "out"), data=[str(data)], max_steps=2,
            per_device_train_batch_size=2, max_length=256, learning_rate=1e-2,
            lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        )
    )
    assert (final / "adapter_config.json").exists() and (final / "adapter_model.safetensors").exists()
    assert not (final / "model.safetensors").exists()
