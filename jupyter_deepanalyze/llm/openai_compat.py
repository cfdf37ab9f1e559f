"""Streaming chat completions against any OpenAI-compatible server (vLLM first).

Owns the HTTP side of a model turn: the request body of PROTOCOL.md ("The loop"),
server-sent-event parsing, ``</Code>`` restoration, ``max_tokens`` bounded by the
server's ``max_model_len``, retries with backoff on connection errors and 5xx, and the
one-line message when nothing answers. A stream counts as a turn only if it ended
properly (a ``finish_reason`` or ``[DONE]``); one that breaks off — closed, reset, or
silent past the timeout — raises ``StreamCutOff``, and what the server sends that is not
an event of the expected shape is skipped, never a crash. The server is only ever probed with
``GET {base}/models``, never with a chat request.

Must not contain agent logic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from ..protocol import CODE_CLOSE, Dialect, close_open_code, dialect_for
from . import ContextWindowFullError, GenerationParams, Message, ModelError, ModelUnavailableError, StreamCutOff

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://localhost:8000/v1"
VLLM_HINT = (
    "start one with `vllm serve RUC-DataLab/DeepAnalyze-8B --served-model-name DeepAnalyze-8B "
    "--port 8000`"
)
RETRY_DELAYS = (0.5, 1.0, 2.0)
_RETRY_STATUS = frozenset({500, 502, 503, 504})
# A conservative characters-per-token ratio: over-estimating the prompt only shortens
# the turn budget; an under-estimate is corrected from the server's 400 answer.
_CHARS_PER_TOKEN = 2.5
_INPUT_TOKENS = (
    re.compile(r"(\d+) in the messages"),
    re.compile(r"request has (\d+) input tokens"),
    re.compile(r"prompt \(length (\d+)\)"),
    re.compile(r"(\d+) input tokens"),
)
_CONTEXT_LENGTH = re.compile(r"maximum (?:context|model) length (?:is|of) (\d+)")


class NoModelList(ModelError):
    """The server answers but has no usable ``GET /models`` (a named model may still work)."""


def unavailable(base_url: str) -> ModelUnavailableError:
    # Said to someone who named this address: start the server there, or fix the address.
    return ModelUnavailableError(
        f"No model server at {base_url}: start it (e.g. `vllm serve MODEL --port PORT`) or check the address."
    )


class OpenAICompatModel:
    """A model served behind ``{base_url}/chat/completions``."""

    def __init__(
        self,
        base_url: str,
        *,
        model_name: str = "",
        api_key: str = "",
        dialect: str = "auto",
        request_timeout: float = 600.0,
        connect_timeout: float = 3.0,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.spec = self.base_url
        self.name = model_name
        self.max_model_len: int | None = None
        self._dialect_override = dialect
        self.dialect: Dialect = dialect_for(model_name, dialect)
        self._retry_delays = tuple(retry_delays)
        self._ready = False
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(request_timeout, connect=connect_timeout),
            transport=transport,
        )

    def __repr__(self) -> str:  # never shows the API key
        return f"OpenAICompatModel({self.base_url!r}, name={self.name!r})"

    # ------------------------------------------------------------------ discovery

    async def list_models(self) -> list[dict[str, Any]]:
        """``GET {base}/models``: the one way this project probes a server."""
        response = await self._request("GET", f"{self.base_url}/models")
        if response.status_code == 401 or response.status_code == 403:
            raise ModelError(
                f"The model server at {self.base_url} refused the request "
                f"(HTTP {response.status_code}): check its API key "
                f"(DEEPANALYZE_API_KEY for the default model, DeepAnalyze.api_keys for others)."
            )
        if response.status_code != 200:
            raise NoModelList(
                f"The model server at {self.base_url} answered GET /models with HTTP "
                f"{response.status_code}."
            )
        try:
            return list(response.json().get("data", []))
        except (ValueError, AttributeError) as exc:
            raise NoModelList(f"{self.base_url}/models did not return a model list") from exc

    async def ready(self) -> None:
        if self._ready:
            return
        try:
            listed = await self.list_models()
        except NoModelList:
            if not self.name:
                raise
            listed = []  # a named model on a server without /models still works
        entry = next((m for m in listed if m.get("id") == self.name), None)
        if entry is None and self.name and listed:  # a chat request would only be refused
            served = ", ".join(repr(str(m.get("id"))) for m in listed[:5])
            raise ModelError(f"The model server at {self.base_url} does not serve {self.name!r} (it serves {served}).")
        if entry is None and not self.name:
            if not listed:
                raise ModelError(f"The model server at {self.base_url} serves no model.")
            entry = listed[0]
            self.name = str(entry["id"])
        if entry is not None and isinstance(entry.get("max_model_len"), int):
            self.max_model_len = entry["max_model_len"]
        self.dialect = dialect_for(self.name, self._dialect_override)
        self._ready = True

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ generation

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        await self.ready()
        body: dict[str, Any] = {
            "model": self.name,
            "messages": [dict(m) for m in messages],
            "temperature": params.temperature,
            "max_tokens": self._bounded_max_tokens(messages, params.max_tokens),
            "stop": list(params.stop),
            "stream": True,
            **self.dialect.request_extras,
            **params.extra,
        }
        for _ in range(2):  # a second try only after a context-length correction
            text: list[str] = []
            try:
                async for piece, finish_reason, stop_reason in self._completion(body):
                    if piece:
                        text.append(piece)
                        yield piece
                    if finish_reason is not None:
                        restored = self._restore_stop(
                            "".join(text), finish_reason, stop_reason, params.stop
                        )
                        if restored:
                            yield restored
                return
            except _ContextCorrection as correction:
                body["max_tokens"] = correction.max_tokens

    def _bounded_max_tokens(self, messages: Sequence[Message], wanted: int) -> int:
        if self.max_model_len is None:
            return wanted
        characters = sum(len(str(m.get("content", ""))) + 8 for m in messages)
        estimate = int(characters / _CHARS_PER_TOKEN)
        room = self.max_model_len - estimate
        if room < 1:
            # The estimate is conservative: let the server decide, it reports the truth.
            return min(wanted, max(1, self.max_model_len // 16))
        return max(1, min(wanted, room))

    @staticmethod
    def _restore_stop(
        text: str, finish_reason: str, stop_reason: Any, stops: Sequence[str]
    ) -> str:
        """What to append so the turn holds the stop sequence the server dropped."""
        if isinstance(stop_reason, str) and stop_reason in stops:
            return stop_reason
        if stop_reason is None and finish_reason == "stop" and CODE_CLOSE in stops:
            if close_open_code(text) != text:
                return CODE_CLOSE
        return ""

    async def _completion(self, body: dict[str, Any]) -> AsyncIterator[tuple[str, str | None, Any]]:
        """Yields (text, finish_reason, stop_reason) from a streamed or plain answer;
        raises ``StreamCutOff`` when the answer breaks off before it ended."""
        url = f"{self.base_url}/chat/completions"
        delays = list(self._retry_delays)
        while True:
            answering = False  # the server has begun its answer: no silent retry from here
            try:
                async with self._client.stream("POST", url, json=body) as response:
                    if response.status_code in _RETRY_STATUS and delays:
                        await response.aread()
                        log.info("model server answered %s; retrying", response.status_code)
                        await asyncio.sleep(delays.pop(0))
                        continue
                    if response.status_code != 200:
                        await response.aread()
                        self._raise_for_answer(response, body)
                    answering = True
                    content_type = response.headers.get("content-type", "")
                    if "text/event-stream" not in content_type:
                        await response.aread()
                        yield self._plain_answer(response)
                        return
                    finished = False
                    async for line in response.aiter_lines():
                        parsed = self._event(line)
                        if parsed is _DONE:
                            return
                        if isinstance(parsed, tuple):
                            finished = finished or parsed[1] is not None
                            yield parsed
                    if not finished:
                        raise StreamCutOff(f"The model server at {self.base_url} closed the connection mid-answer.")
                    return
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if not delays:
                    raise unavailable(self.base_url) from exc
                await asyncio.sleep(delays.pop(0))
            except httpx.TimeoutException as exc:
                raise StreamCutOff(
                    f"The model server at {self.base_url} stopped sending mid-answer "
                    f"(no data for {self._client.timeout.read:g} s)."
                    if answering
                    else f"The model server at {self.base_url} did not answer "
                    f"(no data for {self._client.timeout.read:g} s)."
                ) from exc
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as exc:
                if _caused_by(exc, ConnectionResetError):
                    raise StreamCutOff(f"The model server at {self.base_url} reset the connection mid-answer.") from exc
                raise StreamCutOff(f"The model server at {self.base_url} closed the connection mid-answer.") from exc
            except httpx.TransportError as exc:
                raise ModelError(f"Connection to the model server at {self.base_url} failed: {exc}") from exc

    @staticmethod
    def _event(line: str) -> tuple[str, str | None, Any] | object | None:
        """One server-sent event line: ``_DONE``, (text, finish_reason, stop_reason), or
        None for anything else (comments, keep-alives, junk, fields of the wrong type)."""
        if not line.startswith("data:"):
            return None
        payload = line[5:].strip()
        if payload == "[DONE]":
            return _DONE
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        if "error" in data:
            error = data["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise ModelError(f"The model server reported an error: {str(message)[:500]}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        choice = choices[0]
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        finish_reason = choice.get("finish_reason")
        return (
            content if isinstance(content, str) else "",
            finish_reason if isinstance(finish_reason, str) else None,
            choice.get("stop_reason"),
        )

    @staticmethod
    def _plain_answer(response: httpx.Response) -> tuple[str, str | None, Any]:
        try:
            choice = response.json()["choices"][0]
        except (ValueError, KeyError, IndexError) as exc:
            raise ModelError("The model server sent an answer without choices.") from exc
        message = choice.get("message") or {}
        return (
            message.get("content") or "",
            choice.get("finish_reason") or "stop",
            choice.get("stop_reason"),
        )

    def _raise_for_answer(self, response: httpx.Response, body: dict[str, Any]) -> None:
        try:
            detail = response.json()
            message = detail.get("error", detail)
            if isinstance(message, dict):
                message = message.get("message", message)
            message = str(message)
        except ValueError:
            message = response.text[:500]
        if response.status_code == 400:
            context = _CONTEXT_LENGTH.search(message)
            inputs = next((m for p in _INPUT_TOKENS if (m := p.search(message))), None)
            if context and inputs:
                limit, used = int(context.group(1)), int(inputs.group(1))
                self.max_model_len = limit
                if used >= limit:
                    raise ContextWindowFullError(limit=limit, needed=used)
                if body.get("max_tokens") != limit - used:
                    raise _ContextCorrection(limit - used)
        if response.status_code in (401, 403):
            raise ModelError(
                f"The model server at {self.base_url} refused the request "
                f"(HTTP {response.status_code}): check its API key "
                f"(DEEPANALYZE_API_KEY for the default model, DeepAnalyze.api_keys for others)."
            )
        if response.status_code == 404 and "model" in message.lower():
            raise ModelError(
                f"The model server at {self.base_url} does not serve {self.name!r}: {message}"
            )
        raise ModelError(
            f"The model server at {self.base_url} answered HTTP {response.status_code}: {message}"
        )

    async def _request(self, method: str, url: str) -> httpx.Response:
        delays = list(self._retry_delays)
        while True:
            try:
                response = await self._client.request(method, url)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if not delays:
                    raise unavailable(self.base_url) from exc
                await asyncio.sleep(delays.pop(0))
                continue
            except httpx.TransportError as exc:
                raise ModelError(f"Connection to the model server at {self.base_url} failed: {exc}") from exc
            if response.status_code in _RETRY_STATUS and delays:
                await asyncio.sleep(delays.pop(0))
                continue
            return response


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in ``error``'s chain of causes (httpx wraps the socket's error)."""
    seen: BaseException | None = error
    for _ in range(16):  # a chain, not a cycle
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _ContextCorrection(Exception):
    """Internal: retry the request with the ``max_tokens`` the server says fits."""

    def __init__(self, max_tokens: int) -> None:
        super().__init__(max_tokens)
        self.max_tokens = max_tokens


_DONE = object()
