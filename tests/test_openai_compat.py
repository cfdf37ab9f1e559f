"""The OpenAI-compatible backend against the scripted vLLM-like server."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jupyter_deepanalyze.config import DeepAnalyze
from jupyter_deepanalyze.llm import ContextWindowFullError, GenerationParams, ModelError, ModelUnavailableError
from jupyter_deepanalyze.llm.openai_compat import OpenAICompatModel
from jupyter_deepanalyze.llm.registry import open_model, parse_spec

TURN = "<Analyze>plan</Analyze>\n<Code>\n```python\nprint(1)\n```\n</Code>\n<Execute>\nmade up\n</Execute>"
MESSAGES = [{"role": "user", "content": "# Instruction\nQ"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def collect(model: OpenAICompatModel, params: GenerationParams | None = None) -> str:
    return "".join([piece async for piece in model.stream(MESSAGES, params or GenerationParams())])


async def test_streams_the_turn_and_restores_the_stop_sequence(scripted_llm) -> None:
    llm = scripted_llm([TURN])
    model = OpenAICompatModel(llm.url)
    try:
        text = await collect(model, GenerationParams(temperature=0.4, max_tokens=1000))
    finally:
        await model.aclose()
    assert text == "<Analyze>plan</Analyze>\n<Code>\n```python\nprint(1)\n```\n</Code>"
    (request,) = llm.requests
    assert request == {
        "model": "DeepAnalyze-8B",
        "messages": MESSAGES,
        "temperature": 0.4,
        "max_tokens": 1000,
        "stop": ["</Code>"],
        "stream": True,
        "add_generation_prompt": False,
    }
    assert model.name == "DeepAnalyze-8B" and model.dialect.name == "native"
    assert model.max_model_len == 32768


async def test_ready_only_asks_the_model_list(scripted_llm) -> None:
    llm = scripted_llm([])
    model = OpenAICompatModel(llm.url)
    await model.ready()
    await model.ready()
    await model.aclose()
    assert llm.requests == [] and llm.model_list_calls == 1


async def test_servers_without_stop_reason_get_an_open_code_block_closed(scripted_llm) -> None:
    llm = scripted_llm([TURN, "<Answer>done</Answer>"], report_stop_reason=False)
    model = OpenAICompatModel(llm.url)
    try:
        assert (await collect(model)).endswith("print(1)\n```\n</Code>")
        assert await collect(model) == "<Answer>done</Answer>"  # nothing added to a closed turn
    finally:
        await model.aclose()


async def test_a_generic_model_gets_no_native_extras(scripted_llm) -> None:
    llm = scripted_llm(["<Answer>4</Answer>"], model="qwen2.5:7b")
    model = OpenAICompatModel(llm.url)
    try:
        await collect(model)
    finally:
        await model.aclose()
    assert model.dialect.name == "generic"
    assert "add_generation_prompt" not in llm.requests[0]


async def test_max_tokens_is_bounded_by_the_context_window(scripted_llm) -> None:
    llm = scripted_llm(["<Answer>ok</Answer>"], max_model_len=2048)
    model = OpenAICompatModel(llm.url)
    try:
        assert await collect(model, GenerationParams(max_tokens=32768)) == "<Answer>ok</Answer>"
    finally:
        await model.aclose()
    assert len(llm.requests) == 1 and llm.requests[0]["max_tokens"] < 2048


async def test_an_underestimated_prompt_is_corrected_from_the_servers_answer(scripted_llm) -> None:
    llm = scripted_llm(["<Answer>ok</Answer>"], max_model_len=4000)
    model = OpenAICompatModel(llm.url, model_name="DeepAnalyze-8B")
    model.max_model_len = None  # as if /models did not report it
    await model.ready()
    model.max_model_len = None
    try:
        assert await collect(model, GenerationParams(max_tokens=3999)) == "<Answer>ok</Answer>"
    finally:
        await model.aclose()
    first, second = llm.requests
    assert first["max_tokens"] == 3999
    assert second["max_tokens"] == 4000 - llm.prompt_tokens(first)  # exactly what fits


async def test_a_full_context_window_is_a_clear_error(scripted_llm) -> None:
    llm = scripted_llm(["never"], max_model_len=100)
    model = OpenAICompatModel(llm.url)
    messages = [{"role": "user", "content": "x" * 2000}]
    try:
        with pytest.raises(ContextWindowFullError, match=r"context window \(100 tokens\) is full"):
            async for _ in model.stream(messages, GenerationParams()):
                pass
    finally:
        await model.aclose()


async def test_nothing_listening_fails_within_seconds_with_the_clear_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = OpenAICompatModel(url)
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError) as caught:
        await model.ready()
    await model.aclose()
    assert time.monotonic() - started < 8
    message = str(caught.value)
    assert message.startswith(f"No model server at {url}")
    assert "vllm serve" in message and "check the address" in message and "\n" not in message
    assert "--model" not in message  # said to whoever named this address, in any front door


class Flaky(BaseHTTPRequestHandler):
    """Answers 503 twice, then like vLLM (non-streaming JSON even when asked to stream)."""

    calls = 0
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"data": [{"id": "DeepAnalyze-8B"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        if type(self).calls <= 2:
            self._send(503, {"error": "warming up"})
            return
        choice = {"message": {"content": "<Code>\nprint(2)\n"}, "finish_reason": "stop", "stop_reason": "</Code>"}
        self._send(200, {"choices": [choice]})


async def test_5xx_answers_are_retried_and_plain_json_answers_accepted() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    model = OpenAICompatModel(f"http://127.0.0.1:{server.server_address[1]}/v1", retry_delays=(0.05, 0.05, 0.05))
    try:
        assert await collect(model) == "<Code>\nprint(2)\n</Code>"
    finally:
        await model.aclose()
        server.shutdown()
    assert Flaky.calls == 3


async def test_the_api_key_is_sent_and_a_refusal_says_so(scripted_llm, monkeypatch) -> None:
    llm = scripted_llm(["<Answer>ok</Answer>"], api_key="s3cret")
    refused = OpenAICompatModel(llm.url)
    with pytest.raises(ModelError, match="DEEPANALYZE_API_KEY"):
        await refused.ready()
    await refused.aclose()
    monkeypatch.setenv("DEEPANALYZE_API_KEY", "s3cret")
    monkeypatch.setenv("DEEPANALYZE_MODEL", llm.url)
    model = await open_model(DeepAnalyze())
    try:
        assert await collect(model) == "<Answer>ok</Answer>"
        assert "s3cret" not in repr(model)
    finally:
        await model.aclose()


def test_model_specs_are_parsed_in_one_place() -> None:
    assert parse_spec("http://gpu:8000/v1/").target == "http://gpu:8000/v1"
    assert parse_spec("auto").kind == "auto"
    with pytest.raises(ModelError, match="Unknown model spec"):
        parse_spec("gpt-4")


async def test_auto_without_a_server_says_how_to_start_one(monkeypatch) -> None:
    monkeypatch.delenv("DEEPANALYZE_MODEL", raising=False)
    import jupyter_deepanalyze.llm.registry as registry

    monkeypatch.setattr(registry, "DEFAULT_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ModelUnavailableError, match="vllm serve"):
        await open_model(DeepAnalyze())
