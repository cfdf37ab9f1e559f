"""A tiny Qwen3-architecture model and tokenizer, built locally in seconds, no hub access.

Owns ``build_tiny_model(path) -> path``: a byte-level BPE tokenizer trained on a small
built-in corpus, with the ten DeepAnalyze tags and DeepSeek's turn markers
(``<｜User｜>``, ``<｜Assistant｜>``, ``<｜end▁of▁sentence｜>`` as EOS) as single tokens, a
DeepSeek-style chat template that renders the ``execute`` role inside the assistant turn
as DeepAnalyze's does, and a randomly initialised ``Qwen3ForCausalLM`` a few hundred
thousand parameters large. The result is an ordinary ``save_pretrained`` folder that
``AutoTokenizer``/``AutoModelForCausalLM`` load; it is cached by the build's settings.

It exists for CPU tests and smoke runs (training, the transformers backend); it says
nothing about the 8B model's quality. Must not download anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from jupyter_deepanalyze.protocol import TAGS

TAG_TOKENS: tuple[str, ...] = tuple(t for tag in TAGS for t in (f"<{tag}>", f"</{tag}>"))
"""The ten DeepAnalyze tags, each one token in the tiny vocabulary (as in the 8B's)."""

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
USER, ASSISTANT, PAD = "<｜User｜>", "<｜Assistant｜>", "<｜▁pad▁｜>"
"""DeepSeek's turn markers, as DeepSeek-R1-0528-Qwen3-8B (DeepAnalyze's base) has them."""

BASE_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages if message.role == 'system' -%}{{ message.content }}{%- endfor -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'user' -%}{{ '<｜User｜>' + message.content + '<｜Assistant｜>' }}"
    "{%- elif message.role == 'assistant' -%}{{ message.content + '<｜end▁of▁sentence｜>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt and messages[-1].role == 'assistant' -%}{{ '<｜Assistant｜>' }}{%- endif -%}"
)
"""A base model's DeepSeek-style template: ``<｜User｜>…<｜Assistant｜>…<｜end▁of▁sentence｜>``
(ms-swift's ``deepseek_r1`` layout, which the reference trained on). It knows no
``execute`` role."""

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages if message.role == 'system' -%}{{ message.content }}{%- endfor -%}"
    "{%- for message in messages -%}"
    "{%- set following = messages[loop.index0 + 1].role if not loop.last else none -%}"
    "{%- if message.role == 'user' -%}{{ '<｜User｜>' + message.content + '<｜Assistant｜>' }}"
    "{%- elif message.role == 'assistant' -%}{{ message.content }}"
    # An execution continues the assistant's turn: no end of sentence before it.
    "{%- if following != 'execute' -%}{{ '<｜end▁of▁sentence｜>' }}{%- endif -%}"
    "{%- elif message.role == 'execute' -%}{{ '\\n<Execute>\\n' + message.content + '\\n</Execute>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt and messages[-1].role == 'assistant' -%}{{ '<｜Assistant｜>' }}{%- endif -%}"
)
"""The base template plus DeepAnalyze's ``execute`` role: ``{"role": "execute", "content":
OUT}`` renders as ``\\n<Execute>\\nOUT\\n</Execute>\\n`` inside the assistant's turn, which
stays open after it, so [user, assistant, execute, assistant] renders exactly like [user,
one assistant message holding the whole tagged trajectory] (the SFT layout). Rendered with
``add_generation_prompt=False`` (the native rule), a conversation ending with a user
message or an execution leaves the assistant's turn open for the model."""

_CORPUS = r"""
# Instruction
Calculate the mean fare paid by the passengers. Report the result as @mean_fare[value].
# Data
File 1:
{
    "name": "titanic.csv",
    "size": "59.8KB"
}
<Analyze>
I will load the data with pandas, look at the columns and compute the statistic.
The question asks for the mean, the median, the maximum, the minimum and the count.
</Analyze>
<Code>
```python
import pandas as pd
import numpy as np
df = pd.read_csv("titanic.csv")
print(df.shape)
print(df.columns.tolist())
print(df.head())
print(df.describe())
print(round(df["Fare"].mean(), 2))
print(df["Age"].isnull().sum())
print(df.groupby("Sex")["Survived"].mean())
value = df[column].max() - df[column].min()
print(len(df), df[column].nunique(), df[column].median(), df[column].std())
```
</Code>
<Execute>
(891, 12)
['PassengerId', 'Survived', 'Pclass', 'Name', 'Sex', 'Age', 'Fare']
34.65
</Execute>
<Understand>
The output shows the table has 891 rows and 12 columns. The mean fare is 34.65.
</Understand>
<Answer>
@mean_fare[34.65]
</Answer>
[Error]:
Traceback (most recent call last):
  File "<string>", line 3, in <module>
KeyError: 'Fare'
NameError: name 'df' is not defined
FileNotFoundError: [Errno 2] No such file or directory: 'data.csv'
0123456789 0.5 1.0 12.25 -3.75 100 2024-01-01 True False None
for i in range(10): if x > 0: return x else: pass
def f(x): return [v for v in x if v is not None]
the a of and to in is that for it with as was on be by this are from at or
analysis data column row value table file result answer report correlation
"""


@dataclass(frozen=True)
class TinySpec:
    """Settings of the tiny model; the cache key is a hash of them."""

    vocab_size: int = 1024
    hidden_size: int = 64
    intermediate_size: int = 192
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    max_position_embeddings: int = 8192
    seed: int = 0
    version: int = 2  # bump when the corpus, template or layout changes

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True) + BASE_CHAT_TEMPLATE + CHAT_TEMPLATE + _CORPUS
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_MARKER = "tiny_build.json"


def default_tiny_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "jupyter-deepanalyze" / f"tiny-qwen3-{TinySpec().key()}"


def is_built(path: str | Path, spec: TinySpec = TinySpec()) -> bool:
    marker = Path(path) / _MARKER
    try:
        return json.loads(marker.read_text()).get("key") == spec.key()
    except (OSError, ValueError):
        return False


def build_tiny_tokenizer(spec: TinySpec = TinySpec(), *, tags: bool = True):
    """A ``PreTrainedTokenizerFast``: byte-level BPE, DeepSeek's markers as special tokens.

    With ``tags`` (the default) the ten DeepAnalyze tags are single tokens and the chat
    template knows the ``execute`` role, as DeepAnalyze-8B's does. ``tags=False`` is a
    base model's tokenizer (DeepSeek-R1-0528-Qwen3-8B's layout): no tags, and a template
    without ``execute`` (to test adding them).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    markers = [BOS, EOS, USER, ASSISTANT, PAD]
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size - len(markers) - len(TAG_TOKENS),
        special_tokens=markers,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    # The tags are added tokens that are never split, but not "special": decoding with
    # skip_special_tokens=True (as TRL does) must keep them in the text.
    if tags:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=None,
        padding_side="left",
        model_max_length=spec.max_position_embeddings,
    )
    fast.chat_template = CHAT_TEMPLATE if tags else BASE_CHAT_TEMPLATE
    return fast


def build_tiny_model(path: str | Path | None = None, *, spec: TinySpec = TinySpec(), force: bool = False) -> Path:
    """Build (or reuse) the tiny model and tokenizer in ``path``; returns the folder.

    Safe to call from several processes at once: the folder is built aside and moved
    into place in one rename.
    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    target = Path(path) if path is not None else default_tiny_path()
    if not force and is_built(target, spec):
        return target
    tokenizer = build_tiny_tokenizer(spec)
    bos_id = tokenizer.convert_tokens_to_ids(BOS)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    pad_id = tokenizer.convert_tokens_to_ids(PAD)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(spec.seed)
    try:
        model = Qwen3ForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config = GenerationConfig(
        eos_token_id=eos_id, pad_token_id=pad_id, do_sample=True, temperature=1.0
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _MARKER).write_text(json.dumps({"key": spec.key(), "spec": asdict(spec)}, indent=2))
        if target.exists():
            if not force and is_built(target, spec):  # another process won the race
                return target
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            if not is_built(target, spec):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
