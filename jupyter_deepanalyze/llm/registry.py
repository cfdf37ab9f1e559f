"""Model specs: the one parser every front door uses to turn a string into a backend.

Specs (ARCHITECTURE.md): ``http(s)://…/v1`` (OpenAI-compatible; served name from
``model_name`` or the server's ``/v1/models``), ``vllm:ID_OR_PATH`` (a managed ``vllm
serve``, or vLLM's in-process engine), ``transformers:ID_OR_PATH`` (in-process; a
``.gguf`` path works), ``llamacpp:PATH.gguf`` (in-process llama.cpp), ``tiny`` (Gemma 3
270M for CPU smoke runs: llama.cpp when installed, else transformers) and ``auto``
(``DEEPANALYZE_MODEL`` if set, else ``http://localhost:8000/v1`` if it answers, else a
clear message).

``open_model`` gives a one-off model; ``DeferredModel`` opens one when a run first asks it
to be ready (``ModelOpenedOnReady`` for the CLI), so a model that cannot be opened ends
that run ``failed`` through the agent's own events; ``ModelRegistry`` keeps models open
and shared between runs (the server: one vLLM process, one set of weights in memory).
Describing a spec without opening it is ``description.describe``.

Must not contain agent logic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..config import MODEL_ENV, DeepAnalyze
from ..protocol import Dialect, dialect_for
from . import ChatModel, GenerationParams, Message, ModelError, ModelUnavailableError
from .openai_compat import DEFAULT_BASE_URL, VLLM_HINT, OpenAICompatModel

SPEC_HELP = (
    "an OpenAI-compatible base URL such as http://localhost:8000/v1, 'vllm:ID_OR_PATH', "
    "'transformers:ID_OR_PATH', 'llamacpp:PATH.gguf', 'tiny' or 'auto'"
)
_PREFIXED = ("transformers", "vllm", "llamacpp")


class UnknownModelSpec(ModelError, ValueError):
    """A spec that names no backend: a usage error, not a model failure."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``kind`` is openai, transformers, vllm, tiny or auto."""

    kind: str
    target: str = ""

    def __str__(self) -> str:
        if self.kind == "openai":
            return self.target
        if self.kind in _PREFIXED:
            return f"{self.kind}:{self.target}"
        return self.kind


def parse_spec(spec: str) -> ModelSpec:
    text = spec.strip()
    if not text or text == "auto":
        return ModelSpec("auto")
    if text == "tiny":
        return ModelSpec("tiny")
    if text.startswith(("http://", "https://")):
        return ModelSpec("openai", text.rstrip("/"))
    kind, _, target = text.partition(":")
    if kind in _PREFIXED and target.strip():
        return ModelSpec(kind, target.strip())
    raise UnknownModelSpec(f"Unknown model spec {spec!r}: use {SPEC_HELP}.")


async def _answers(base_url: str, timeout: float = 1.5) -> bool:
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"{base_url}/models")
    except httpx.HTTPError:
        return False
    return response.status_code < 500


async def resolve_spec(spec: str) -> ModelSpec:
    """Turn ``auto`` into a concrete spec; other specs are returned parsed."""
    parsed = parse_spec(spec)
    if parsed.kind != "auto":
        return parsed
    if await _answers(DEFAULT_BASE_URL):
        return ModelSpec("openai", DEFAULT_BASE_URL)
    raise ModelUnavailableError(
        f"No model configured (${MODEL_ENV} is not set) and no model server at "
        f"{DEFAULT_BASE_URL}: {VLLM_HINT}, or name a model (--model SPEC; --model tiny is a "
        "CPU smoke test)."
    )


def api_key_for(config: DeepAnalyze, base_url: str) -> str:
    """The key to send to the model server at ``base_url``: its own from
    ``DeepAnalyze.api_keys``, else ``DeepAnalyze.api_key`` when it is the default model's
    server (``DeepAnalyze.model``, or the address ``auto`` stands for), else none: a key goes
    only to the endpoint it was configured for."""
    wanted = base_url.strip().rstrip("/")
    for spec, key in config.api_keys.items():
        if spec.strip().rstrip("/") == wanted:
            return key
    try:
        default = parse_spec(config.model)
    except UnknownModelSpec:
        return ""
    default_url = default.target if default.kind == "openai" else DEFAULT_BASE_URL if default.kind == "auto" else None
    return config.api_key if wanted == default_url else ""


def local_name(spec: ModelSpec, config: DeepAnalyze) -> str:
    """The name of an in-process or managed model: ``model_name``, else the file or folder name."""
    return config.model_name or Path(spec.target.rstrip("/")).name.removesuffix(".gguf") or spec.target


def create_model(spec: ModelSpec, config: DeepAnalyze) -> ChatModel:
    """A backend for a resolved spec (not yet loaded or started)."""
    if spec.kind == "openai":
        return OpenAICompatModel(
            spec.target,
            model_name=config.model_name,
            api_key=api_key_for(config, spec.target),
            dialect=config.dialect,
            request_timeout=config.request_timeout,
        )
    if spec.kind == "tiny":
        from .tiny import tiny_model

        return tiny_model(device=config.device or None)
    if spec.kind == "llamacpp":
        from .llamacpp_local import LlamaCppModel

        return LlamaCppModel(spec.target, name=config.model_name or None, dialect=config.dialect)
    if spec.kind == "transformers":
        from .transformers_local import TransformersModel

        return TransformersModel(
            spec.target, name=local_name(spec, config), dialect=config.dialect, device=config.device or None
        )
    if spec.kind == "vllm":
        from .vllm_local import ManagedVLLM, VLLMEngineModel, VLLMServerModel

        if config.vllm_mode == "engine":
            return VLLMEngineModel(spec.target, name=local_name(spec, config), dialect=config.dialect)
        server = ManagedVLLM(
            spec.target,
            served_name=local_name(spec, config),
            executable=config.vllm_executable,
            extra_args=config.vllm_args,
        )
        return VLLMServerModel(
            spec.target, server=server, dialect=config.dialect, request_timeout=config.request_timeout
        )
    raise ModelError(f"Cannot open a model for spec {str(spec)!r}.")


async def open_model(config: DeepAnalyze, spec: str | None = None) -> ChatModel:
    """The backend for ``spec`` (default: ``config.model``), ready to stream."""
    return await made_ready(create_model(await resolve_spec(spec or config.model), config))


async def made_ready(model: ChatModel) -> ChatModel:
    """``model`` once ``ready()``; closed (and the error raised) when it cannot be."""
    try:
        await model.ready()
    except BaseException:
        await model.aclose()
        raise
    return model


class DeferredModel:
    """A ``ChatModel`` whose backend is opened by ``ready()`` (``_open``, in subclasses)."""

    def __init__(self, spec: str, config: DeepAnalyze) -> None:
        self.spec = spec
        self.name = ""
        self.dialect: Dialect = dialect_for(config.model_name, config.dialect)
        self._model: ChatModel | None = None

    async def _open(self) -> ChatModel:
        raise NotImplementedError

    async def ready(self) -> None:
        if self._model is None:
            self._model = await self._open()
            self.name = self._model.name
            self.dialect = self._model.dialect

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        if self._model is None:
            raise ModelError("the model was not opened")
        return self._model.stream(messages, params)

    async def aclose(self) -> None:
        if self._model is not None:
            await self._model.aclose()


class ModelOpenedOnReady(DeferredModel):
    """``open_model(config, spec)`` when the run begins (``jupyter deepanalyze report``)."""

    def __init__(self, config: DeepAnalyze, spec: str | None = None) -> None:
        super().__init__(spec or config.model, config)
        self.config = config

    async def _open(self) -> ChatModel:
        return await open_model(self.config, self.spec)


class ModelRegistry:
    """Open models shared by every run of a long-lived process (the server extension)."""

    def __init__(self, config: DeepAnalyze) -> None:
        self.config = config
        self._models: dict[str, ChatModel] = {}
        self._lock = asyncio.Lock()

    async def get(self, spec: str | None = None) -> ChatModel:
        resolved = await resolve_spec(spec or self.config.model)
        key = str(resolved)
        async with self._lock:  # one vLLM start or weight load at a time
            model = self._models.get(key)
            if model is None:
                model = create_model(resolved, self.config)
                try:
                    await model.ready()
                except BaseException:
                    await model.aclose()
                    raise
                self._models[key] = model
            return model

    def is_open(self, spec: str) -> bool:
        """Whether ``spec`` is loaded or started in this process already."""
        try:
            return str(parse_spec(spec)) in self._models
        except ModelError:
            return False

    async def aclose(self) -> None:
        models, self._models = list(self._models.values()), {}
        await asyncio.gather(*(m.aclose() for m in models), return_exceptions=True)
