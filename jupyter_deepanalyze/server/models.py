"""Which models a user of the server may run, whether they answer, and opening one for a run.

Owns the allow-list rule (the configured model plus ``DeepAnalyze.allowed_models``;
anything else is refused), describing the allowed models (``llm.description``: ``GET
{base}/models`` with a short timeout, never a chat request; local models checked on
disk, never loaded), and ``OnDemandModel``: a run's model, opened when the agent first
asks it to be ready, so a model that cannot be opened ends the run ``failed`` through
the agent's own events instead of failing the HTTP request.

Must not contain agent logic; backends come from ``llm.registry``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from ..config import DeepAnalyze
from ..llm import ChatModel, GenerationParams, Message, ModelError
from ..llm.description import ModelDescription, describe
from ..llm.registry import ModelRegistry
from ..protocol import Dialect, dialect_for


class ModelNotAllowed(PermissionError):
    """The requested model is not one the server's configuration allows."""


def _same_spec(a: str, b: str) -> bool:
    return a.strip().rstrip("/") == b.strip().rstrip("/")


class ModelChoices:
    """The models this server offers: ``DeepAnalyze.model`` first, then ``allowed_models``."""

    def __init__(self, config: DeepAnalyze, registry: ModelRegistry | None = None) -> None:
        self.config = config
        self.registry = registry

    @property
    def default(self) -> str:
        return self.config.model

    def allowed(self) -> list[str]:
        specs: list[str] = []
        for spec in (self.config.model, *self.config.allowed_models):
            if spec.strip() and not any(_same_spec(spec, s) for s in specs):
                specs.append(spec)
        return specs

    def check(self, requested: str | None) -> str:
        """The spec a run uses: the default when none is asked for; refuses others."""
        if requested is None or not requested.strip():
            return self.default
        for spec in self.allowed():
            if _same_spec(requested, spec):
                return spec
        raise ModelNotAllowed(
            f"Model {requested!r} is not allowed on this server; allowed: "
            + ", ".join(repr(s) for s in self.allowed())
            + " (an administrator can add models to DeepAnalyze.allowed_models)."
        )

    async def describe(self) -> list[ModelDescription]:
        """Every allowed model, described as ``jupyter deepanalyze models`` does; a model
        this server has already loaded or started is available whatever its files say."""
        described = await asyncio.gather(*(describe(spec, self.config) for spec in self.allowed()))
        if self.registry is None:
            return list(described)
        registry = self.registry
        return [
            replace(d, available=True, error=None) if not d.available and registry.is_open(d.spec) else d
            for d in described
        ]


class OnDemandModel:
    """A ``ChatModel`` whose backend is opened by ``ready()`` (see the module docstring).

    Backends come from the server's ``ModelRegistry`` and are shared between runs (one
    managed vLLM, one copy of in-process weights); closing a run does not close them.
    """

    def __init__(self, registry: ModelRegistry, spec: str) -> None:
        self.registry = registry
        self.spec = spec
        self.name = ""
        self.dialect: Dialect = dialect_for(registry.config.model_name, registry.config.dialect)
        self._model: ChatModel | None = None

    async def ready(self) -> None:
        if self._model is None:
            self._model = await self.registry.get(self.spec)
            self.name = self._model.name
            self.dialect = self._model.dialect

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        if self._model is None:
            raise ModelError("the model was not opened")
        return self._model.stream(messages, params)

    async def aclose(self) -> None:
        """The registry owns the backend; it is closed with the server."""
