"""What a model spec stands for, cheaply: ``describe(spec, config)``.

Owns the one availability rule every front door shows (``jupyter deepanalyze models``,
``GET /deepanalyze/models``): the spec, the model's name and prompt dialect, whether it
can run here, why not (one line), and its context window when that is cheap to know.

- OpenAI-compatible URLs (and ``auto``, once resolved) are asked ``GET /models`` only,
  through the backend's own ``ready()``, so "available" means exactly what opening the
  model for a run would find.
- In-process and managed specs (``transformers:``, ``llamacpp:``, ``vllm:``, ``tiny``) are checked on
  disk: the model file or folder exists (a hub id: it is in the local Hugging Face
  cache) and the extra they need is installed (``importlib.util.find_spec``, or the
  ``vllm`` command on ``PATH``). The context window comes from the model folder's
  ``config.json`` or ``--max-model-len`` in ``DeepAnalyze.vllm_args``.

Must not start vLLM, load weights or import torch, transformers or vllm: describing a
model has to stay well under a second.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DeepAnalyze
from ..protocol import dialect_for
from . import ModelError
from .openai_compat import OpenAICompatModel
from .registry import ModelSpec, api_key_for, local_name, resolve_spec

PROBE_TIMEOUT = 2.0
"""Seconds an HTTP probe may take (connect and answer)."""

TRANSFORMERS_HINT = "pip install 'jupyter-deepanalyze[transformers]'"
LLAMACPP_HINT = "pip install 'jupyter-deepanalyze[llamacpp]'"
VLLM_HINT = "vLLM is not installed (pip install 'jupyter-deepanalyze[vllm]')"


@dataclass(frozen=True)
class ModelDescription:
    """One model spec, described (an entry of ``GET /deepanalyze/models``)."""

    spec: str
    name: str
    dialect: str
    available: bool
    error: str | None = None
    context_window: int | None = None
    resolved: str = ""
    """The concrete spec ``auto`` stood for (else the spec itself)."""
    source: str = "server"
    """``user``: this user's own model, added in JupyterLab's Model settings."""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "spec": self.spec,
            "name": self.name,
            "dialect": self.dialect,
            "available": self.available,
        }
        if self.error:
            body["error"] = self.error
        if self.context_window:
            body["context_window"] = self.context_window
        if self.source != "server":
            body["source"] = self.source
        return body


def _missing(*modules: str) -> bool:
    return not all(importlib.util.find_spec(module) for module in modules)


def _is_path(target: str) -> bool:
    return target.startswith(("/", ".", "~")) or target.endswith(".gguf")


def _hub_cached(repo_id: str) -> bool:
    """Whether a hub id's ``config.json`` is in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache  # comes with transformers; no torch

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def _config_context(folder: Path) -> int | None:
    """``max_position_embeddings`` of a model folder's ``config.json`` (text config included)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        value = section.get("max_position_embeddings") if isinstance(section, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def _vllm_context(args: list[str]) -> int | None:
    for index, arg in enumerate(args):
        value = arg.partition("=")[2] if arg.startswith("--max-model-len=") else None
        if arg == "--max-model-len" and index + 1 < len(args):
            value = args[index + 1]
        if value is not None and value.isdigit():
            return int(value)
    return None


def _local_problem(spec: ModelSpec, config: DeepAnalyze) -> str | None:
    """Why an in-process or managed spec cannot run here; None when it can."""
    if spec.kind == "tiny":
        from .tiny import tiny_missing  # plain module: no torch at import

        return tiny_missing()
    if spec.kind == "llamacpp":
        if _missing("llama_cpp"):
            return LLAMACPP_HINT
        local = Path(spec.target).expanduser()
        return None if local.is_file() else f"no GGUF file at {local}"
    if spec.kind == "transformers":
        if _missing("torch", "transformers"):
            return TRANSFORMERS_HINT
        if spec.target.endswith(".gguf") and _missing("gguf"):
            return TRANSFORMERS_HINT
    elif config.vllm_mode == "engine" and _missing("vllm"):
        return VLLM_HINT
    elif config.vllm_mode == "serve" and shutil.which(config.vllm_executable) is None:
        return VLLM_HINT
    local = Path(spec.target).expanduser()
    if local.exists():
        return None
    if _is_path(spec.target):
        return f"no model at {local}"
    if spec.kind == "transformers" and not _hub_cached(spec.target):
        return f"{spec.target!r} is not in the local Hugging Face cache (download it first, or give a folder)"
    return None  # a hub id vLLM may download itself


def _describe_local(spec: str, resolved: ModelSpec, config: DeepAnalyze) -> ModelDescription:
    if resolved.kind == "tiny":
        from .tiny import TINY_DIALECT, TINY_NAME  # plain module: no torch at import

        name, dialect = TINY_NAME, TINY_DIALECT.name
    else:
        name = local_name(resolved, config)
        dialect = dialect_for(name, config.dialect).name
    problem = _local_problem(resolved, config)
    context = None
    if resolved.kind == "vllm":
        context = _vllm_context(list(config.vllm_args))
    if context is None and resolved.kind not in ("tiny", "llamacpp"):
        context = _config_context(Path(resolved.target).expanduser())
    return ModelDescription(spec, name, dialect, problem is None, problem, context, str(resolved))


async def _describe_served(spec: str, resolved: ModelSpec, config: DeepAnalyze) -> ModelDescription:
    model = OpenAICompatModel(
        resolved.target,
        model_name=config.model_name,
        api_key=api_key_for(config, resolved.target),
        dialect=config.dialect,
        request_timeout=PROBE_TIMEOUT,
        connect_timeout=PROBE_TIMEOUT,
        retry_delays=(),
    )
    try:
        await model.ready()  # GET /models only
    except ModelError as exc:
        return ModelDescription(spec, model.name, model.dialect.name, False, str(exc), resolved=str(resolved))
    finally:
        await model.aclose()
    return ModelDescription(spec, model.name, model.dialect.name, True, None, model.max_model_len, str(resolved))


async def describe(spec: str, config: DeepAnalyze) -> ModelDescription:
    """``spec`` (default: ``config.model``) described without loading or starting anything."""
    spec = spec or config.model
    try:
        resolved = await resolve_spec(spec)
    except ModelError as exc:
        name = config.model_name
        return ModelDescription(spec, name, dialect_for(name, config.dialect).name, False, str(exc))
    if resolved.kind == "openai":
        return await _describe_served(spec, resolved, config)
    return _describe_local(spec, resolved, config)


__all__ = ["ModelDescription", "describe"]
