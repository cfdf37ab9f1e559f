"""Which models a user of the server may run, whether they answer, and opening one for a run.

Owns the allow-list rule (the configured model plus ``DeepAnalyze.allowed_models``;
anything else is refused), the quick availability probe (``GET {base}/models`` with a
short timeout, never a chat request), and ``OnDemandModel``: a run's model, opened
when the agent first asks it to be ready, so a model that cannot be opened ends the run
``failed`` through the agent's own events instead of failing the HTTP request.

Must not contain agent logic; backends come from ``llm.registry``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import DeepAnalyze
from ..llm import ChatModel, GenerationParams, Message, ModelError
from ..llm.openai_compat import OpenAICompatModel
from ..llm.registry import open_model, resolve_spec
from ..protocol import Dialect, dialect_for

PROBE_TIMEOUT = 2.0
"""Seconds an availability probe may take (connect and answer)."""


class ModelNotAllowed(PermissionError):
    """The requested model is not one the server's configuration allows."""


@dataclass(frozen=True)
class ModelChoice:
    """One entry of ``GET /deepanalyze/models``."""

    spec: str
    name: str
    dialect: str
    available: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "spec": self.spec,
            "name": self.name,
            "dialect": self.dialect,
            "available": self.available,
        }
        if self.error:
            body["error"] = self.error
        return body


def _same_spec(a: str, b: str) -> bool:
    return a.strip().rstrip("/") == b.strip().rstrip("/")


class ModelChoices:
    """The models this server offers: ``DeepAnalyze.model`` first, then ``allowed_models``."""

    def __init__(self, config: DeepAnalyze) -> None:
        self.config = config

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

    async def describe(self) -> list[ModelChoice]:
        return list(await asyncio.gather(*(self.probe(spec) for spec in self.allowed())))

    async def probe(self, spec: str) -> ModelChoice:
        """What ``spec`` resolves to and whether it answers ``GET /models`` right now."""
        config = self.config
        name = config.model_name
        try:
            resolved = await resolve_spec(spec)
            model = OpenAICompatModel(
                resolved.target,
                model_name=config.model_name,
                api_key=config.api_key,
                dialect=config.dialect,
                request_timeout=PROBE_TIMEOUT,
                connect_timeout=PROBE_TIMEOUT,
                retry_delays=(),
            )
            try:
                served = [str(m.get("id")) for m in await model.list_models()]
            finally:
                await model.aclose()
        except ModelError as exc:
            return ModelChoice(spec, name, dialect_for(name, config.dialect).name, False, str(exc))
        name = name or (served[0] if served else "")
        if not served or name not in served:
            error = f"The model server for {spec} does not serve {name!r}." if served else (
                f"The model server for {spec} serves no model."
            )
            return ModelChoice(spec, name, dialect_for(name, config.dialect).name, False, error)
        return ModelChoice(spec, name, dialect_for(name, config.dialect).name, True)


class OnDemandModel:
    """A ``ChatModel`` whose backend is opened by ``ready()`` (see the module docstring)."""

    def __init__(self, config: DeepAnalyze, spec: str) -> None:
        self.config = config
        self.spec = spec
        self.name = ""
        self.dialect: Dialect = dialect_for(config.model_name, config.dialect)
        self._model: ChatModel | None = None

    async def ready(self) -> None:
        if self._model is None:
            self._model = await open_model(self.config, self.spec)
            self.name = self._model.name
            self.dialect = self._model.dialect

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        if self._model is None:
            raise ModelError("the model was not opened")
        return self._model.stream(messages, params)

    async def aclose(self) -> None:
        if self._model is not None:
            await self._model.aclose()
