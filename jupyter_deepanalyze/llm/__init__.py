"""Model backends behind one surface, ``ChatModel``.

Owns the ``ChatModel`` protocol, the generation parameters and the named model errors.
Backends: ``openai_compat`` (vLLM, SGLang, Ollama, llama.cpp server, cloud APIs);
``registry`` turns a model spec into a backend.

Must not contain agent logic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..protocol import STOP_SEQUENCES, Dialect

Message = Mapping[str, str]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings of one model turn."""

    temperature: float = 0.5
    max_tokens: int = 32768
    stop: Sequence[str] = STOP_SEQUENCES
    extra: Mapping[str, Any] = field(default_factory=dict)


class ModelError(RuntimeError):
    """The model could not produce a turn; the message is one line meant for users."""


class ModelUnavailableError(ModelError):
    """Nothing answers at the model's address, or the backend cannot be loaded."""


class ContextWindowFullError(ModelError):
    """The conversation no longer fits in the model's context window.

    ``limit`` is the window and ``needed`` what the conversation takes, in tokens, when
    the backend knows them (the agent then shortens old execute outputs to fit).
    """

    def __init__(self, message: str | None = None, *, limit: int | None = None, needed: int | None = None) -> None:
        if message is None:
            window = f" ({limit} tokens)" if limit is not None else ""
            needs = f": the conversation needs {needed} tokens" if needed is not None else ""
            message = f"The context window{window} is full{needs}."
        super().__init__(message)
        self.limit = limit
        self.needed = needed


class StreamCutOff(ModelError):
    """The model's stream broke off before the turn ended: the connection was closed or
    reset, or no data came for too long, with no ``finish_reason`` and no ``[DONE]``.
    What streamed is not a turn (PROTOCOL.md, "A turn that did not finish")."""


class ChatModel(Protocol):
    """A chat model the agent can stream turns from.

    ``stream`` yields the turn's text exactly as the model wrote it, with the ``</Code>``
    stop sequence restored (PROTOCOL.md, "The loop", step 2). It ends normally only when
    the turn ended properly; a stream that breaks off raises ``StreamCutOff``.
    """

    spec: str
    name: str
    dialect: Dialect

    async def ready(self) -> None:
        """Resolve the served name and limits; raise ``ModelUnavailableError`` if unreachable."""

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


__all__ = [
    "ChatModel",
    "ContextWindowFullError",
    "GenerationParams",
    "Message",
    "ModelError",
    "ModelUnavailableError",
    "StreamCutOff",
]
