"""Model specs: the one parser every front door uses to turn a string into a backend.

Specs (ARCHITECTURE.md): ``http(s)://…/v1`` (OpenAI-compatible; served name from
``model_name`` or the server's ``/v1/models``) and ``auto`` (``DEEPANALYZE_MODEL`` if
set, else ``http://localhost:8000/v1`` if it answers, else a clear message).

Must not contain agent logic.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ..config import MODEL_ENV, DeepAnalyze
from . import ChatModel, ModelError, ModelUnavailableError
from .openai_compat import DEFAULT_BASE_URL, VLLM_HINT, OpenAICompatModel

SPEC_HELP = (
    "an OpenAI-compatible base URL such as http://localhost:8000/v1, or 'auto'"
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``kind`` is ``openai`` or ``auto``; ``target`` the URL."""

    kind: str
    target: str

    def __str__(self) -> str:
        return self.target if self.kind == "openai" else self.kind


def parse_spec(spec: str) -> ModelSpec:
    text = spec.strip()
    if not text or text == "auto":
        return ModelSpec("auto", "")
    if text.startswith(("http://", "https://")):
        return ModelSpec("openai", text.rstrip("/"))
    raise ModelError(f"Unknown model spec {spec!r}: use {SPEC_HELP}.")


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
        f"{DEFAULT_BASE_URL}: {VLLM_HINT}."
    )


async def open_model(config: DeepAnalyze, spec: str | None = None) -> ChatModel:
    """The backend for ``spec`` (default: ``config.model``), ready to stream."""
    resolved = await resolve_spec(spec or config.model)
    model = OpenAICompatModel(
        resolved.target,
        model_name=config.model_name,
        api_key=config.api_key,
        dialect=config.dialect,
        request_timeout=config.request_timeout,
    )
    try:
        await model.ready()
    except BaseException:
        await model.aclose()
        raise
    return model
