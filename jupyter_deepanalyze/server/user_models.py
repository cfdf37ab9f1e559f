"""The user's own model: an OpenAI-compatible URL (and key) added from JupyterLab.

Owns the store: one owner-only JSON file (0600, in a 0700 folder) in the data folder of
the account the Jupyter server runs as — the user's own under JupyterHub, where each
user has a server; not a name the browser sends (a token-authenticated request is
anonymous), so settings never move between accounts. Also the rule of who may use one
(``DeepAnalyze.allow_user_models``; when ``DeepAnalyze.allowed_models`` is set the URL
must be one of them), testing one with ``GET {url}/models``, and opening one for a run.
The API key lives only in that file and in the client that calls the model: it is
never returned by an endpoint, logged, or given to a kernel.

Must not contain agent logic.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DeepAnalyze
from ..llm import ModelError
from ..llm.openai_compat import OpenAICompatModel

PROBE_TIMEOUT = 5.0


class UserModelRefused(PermissionError):
    """The server does not let users add models, or not this one."""


class BadUserModel(ValueError):
    """The settings sent are not a usable OpenAI-compatible address."""


@dataclass(frozen=True)
class UserModel:
    url: str
    model_name: str = ""
    api_key: str = ""

    def public(self) -> dict[str, Any]:
        """What endpoints answer: never the key, only whether there is one."""
        return {"url": self.url, "model_name": self.model_name, "has_api_key": bool(self.api_key)}

    def open(self, config: DeepAnalyze, timeout: float | None = None) -> OpenAICompatModel:
        return OpenAICompatModel(
            self.url,
            model_name=self.model_name,
            api_key=self.api_key,
            dialect=config.dialect,
            request_timeout=timeout or config.request_timeout,
            **({"connect_timeout": timeout, "retry_delays": ()} if timeout else {}),
        )


def parse_user_model(body: dict[str, Any], keep_key: str = "") -> UserModel:
    """A ``UserModel`` from a request body; an absent ``api_key`` keeps ``keep_key``."""
    url = body.get("url")
    if not isinstance(url, str) or not url.strip().startswith(("http://", "https://")):
        raise BadUserModel("'url' must be an OpenAI-compatible base URL such as http://host:8000/v1.")
    name = body.get("model_name", "")
    key = body.get("api_key", None)
    if not isinstance(name, str) or (key is not None and not isinstance(key, str)):
        raise BadUserModel("'model_name' and 'api_key' must be strings.")
    return UserModel(url.strip().rstrip("/"), name.strip(), keep_key if key is None else key.strip())


class UserModelStore:
    """The owner-only settings file of the server's account."""

    def __init__(self, folder: Path, config: DeepAnalyze) -> None:
        self.folder = folder
        self.config = config
        self.path = folder / "model.json"

    def check_allowed(self, url: str | None = None) -> None:
        if not self.config.allow_user_models:
            raise UserModelRefused(
                "This server does not let users add models (an administrator can set "
                "DeepAnalyze.allow_user_models = True)."
            )
        allowed = [s.strip().rstrip("/") for s in self.config.allowed_models]
        if url is not None and allowed and url not in allowed:
            raise UserModelRefused(
                f"{url} is not one of the models this server allows (DeepAnalyze.allowed_models)."
            )

    def load(self) -> UserModel | None:
        if not self.config.allow_user_models:
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return UserModel(str(data.get("url", "")), str(data.get("model_name", "")), str(data.get("api_key", "")))

    def save(self, model: UserModel) -> None:
        self.check_allowed(model.url)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        path = self.path
        partial = path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump({"url": model.url, "model_name": model.model_name, "api_key": model.api_key}, stream)
        os.replace(partial, path)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


async def probe_user_model(model: UserModel, config: DeepAnalyze) -> dict[str, Any]:
    """``GET {url}/models`` with the user's key: ``{ok, models, error?}``, never a chat request."""
    client = model.open(config, timeout=PROBE_TIMEOUT)
    try:
        served = [str(m.get("id")) for m in await client.list_models()]
    except ModelError as exc:
        return {"ok": False, "models": [], "error": str(exc)}
    finally:
        await client.aclose()
    if model.model_name and model.model_name not in served:
        return {"ok": False, "models": served, "error": f"The server does not serve {model.model_name!r}."}
    if not served:
        return {"ok": False, "models": [], "error": "The server serves no model."}
    return {"ok": True, "models": served}
