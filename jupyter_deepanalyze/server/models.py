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
from dataclasses import replace

from ..config import DeepAnalyze
from ..llm import ChatModel, ModelUnavailableError
from ..llm.description import ModelDescription, describe
from ..llm.registry import DeferredModel, ModelRegistry, made_ready, parse_spec
from ..protocol import dialect_for
from .user_models import UserModel, probe_user_model

NO_MODEL = (
    "No model is configured: add one in the DeepAnalyze sidebar's Model settings, or ask the "
    "server's administrator to set DeepAnalyze.model."
)


def where_to_set(spec: str, error: str | None) -> str | None:
    """A probe's or a run's one-line reason in JupyterLab terms: where the model is set."""
    if error is None:
        return None
    if parse_spec(spec).kind == "auto" and error.startswith("No model configured"):
        return NO_MODEL  # the CLI's wording names --model
    if "pip install" in error:
        return f"{error} (in the environment JupyterLab runs from, then restart JupyterLab)."
    return (
        f"{error} This model is set by the server's configuration "
        "(DeepAnalyze.model, DeepAnalyze.allowed_models)."
    )


class ModelNotAllowed(PermissionError):
    """The requested model is not one the server's configuration allows."""


def same_spec(a: str, b: str) -> bool:
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
            if spec.strip() and not any(same_spec(spec, s) for s in specs):
                specs.append(spec)
        return specs

    def check(self, requested: str | None) -> str:
        """The spec a run uses: the default when none is asked for; refuses others."""
        if requested is None or not requested.strip():
            return self.default
        for spec in self.allowed():
            if same_spec(requested, spec):
                return spec
        raise ModelNotAllowed(
            f"Model {requested!r} is not allowed on this server; allowed: "
            + ", ".join(repr(s) for s in self.allowed())
            + " (an administrator can add models to DeepAnalyze.allowed_models)."
        )

    async def describe(self, user_model: UserModel | None = None) -> list[ModelDescription]:
        """Every allowed model, described as ``jupyter deepanalyze models`` does (a model this
        server has already loaded or started is available whatever its files say), with
        reasons in JupyterLab terms; then the user's own model from Model settings."""
        described = await asyncio.gather(*(describe(spec, self.config) for spec in self.allowed()))
        registry = self.registry
        choices = [
            replace(d, available=True, error=None)
            if not d.available and registry is not None and registry.is_open(d.spec)
            else replace(d, error=where_to_set(d.spec, d.error))
            for d in described
        ]
        if user_model is not None and not any(same_spec(user_model.url, c.spec) for c in choices):
            choices.append(await self.probe_user(user_model))
        return choices

    async def probe_user(self, user_model: UserModel) -> ModelDescription:
        """The user's own model (from Model settings), probed with their key."""
        result = await probe_user_model(user_model, self.config)
        name = user_model.model_name or (result["models"][0] if result["models"] else "")
        dialect = dialect_for(name, self.config.dialect).name
        error = result.get("error")
        if error:
            error = f"{error} Change it in the sidebar's Model settings."
        return ModelDescription(user_model.url, name, dialect, result["ok"], error, source="user")


class OnDemandModel(DeferredModel):
    """A run's model, opened by ``ready()`` (see the module docstring).

    Backends come from the server's ``ModelRegistry`` and are shared between runs (one
    managed vLLM, one copy of in-process weights); closing a run does not close them.
    """

    def __init__(self, registry: ModelRegistry, spec: str, user_model: UserModel | None = None) -> None:
        super().__init__(spec, registry.config)
        self.registry = registry
        self.user_model = user_model  # the user's own model: a client of its own, with its key

    async def _open(self) -> ChatModel:
        if self.user_model is not None:
            return await made_ready(self.user_model.open(self.registry.config))
        try:
            return await self.registry.get(self.spec)
        except ModelUnavailableError as exc:
            if parse_spec(self.spec).kind == "auto":
                raise ModelUnavailableError(NO_MODEL) from exc
            raise

    async def aclose(self) -> None:
        """The registry owns shared backends (closed with the server); a user's own is closed here."""
        if self.user_model is not None:
            await super().aclose()
