"""Rendering a conversation with the model's own chat template: one rule on every path.

Owns ``render_prompt``, which the in-process backends (transformers, vLLM's engine) and
training (SFT masks, RL rollouts) use to turn messages into the prompt text or tokens.
The native dialect renders with ``add_generation_prompt=False``, exactly what the
chat-completions path asks a server to render (PROTOCOL.md, "Training-time facts"); the
generic dialect keeps its own rule (``Dialect.template_options``).

Must not load models or generate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..protocol import Dialect


def render_prompt(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    dialect: Dialect,
    *,
    chat_template: str | None = None,
    tokenize: bool = False,
) -> Any:
    """The prompt for the model's next turn: text, or token ids with ``tokenize``.

    ``chat_template`` replaces the tokenizer's own (a model that ships none).
    """
    last_role = messages[-1]["role"] if messages else "user"
    options: dict[str, Any] = dict(dialect.template_options(last_role))
    if chat_template is not None:
        options["chat_template"] = chat_template
    if tokenize:
        options["return_dict"] = False
    return tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=tokenize, **options)
