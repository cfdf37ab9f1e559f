"""A local OpenAI-compatible server that replays scripted model turns (a test fixture).

It behaves like vLLM where the project depends on it: ``GET /v1/models`` lists the
served name and ``max_model_len``; ``POST /v1/chat/completions`` streams (SSE) or
answers in one JSON body, cuts the text at the first ``stop`` string and reports it as
``stop_reason`` (dropped from the text), rejects prompts plus ``max_tokens`` beyond the
context window with vLLM's 400 message, and records every request it received.

A turn is a string or a callable ``turn(request_body) -> str`` (to answer from what
the client sent). Run standalone for manual and browser tests:
``python tests/scripted_llm.py turns.json --port 8000`` (a JSON list of strings).

Never a product default: only tests and demos of the harness use it.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Turn = str | Callable[[dict[str, Any]], str]
CHARS_PER_TOKEN = 4  # the fixture's stand-in tokenizer


class ScriptedLLM:
    """``with ScriptedLLM([...]) as llm:`` serves at ``llm.url`` (``…/v1``)."""

    def __init__(
        self,
        turns: Sequence[Turn],
        *,
        model: str = "DeepAnalyze-8B",
        max_model_len: int = 32768,
        chunk_size: int = 7,
        chunk_delay: float = 0.0,
        report_stop_reason: bool = True,
        honour_stop: bool = True,
        api_key: str | None = None,
    ) -> None:
        self.turns = list(turns)
        self.model = model
        self.max_model_len = max_model_len
        self.chunk_size = chunk_size
        self.chunk_delay = chunk_delay
        self.report_stop_reason = report_stop_reason
        self.honour_stop = honour_stop
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.model_list_calls = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ScriptedLLM:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- behaviour

    def _next_turn(self, body: dict[str, Any]) -> str | None:
        with self._lock:
            self.requests.append(body)
            if not self.turns:
                return None
            turn = self.turns.pop(0)
        return turn(body) if callable(turn) else turn

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        characters = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        return characters // CHARS_PER_TOKEN + 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        llm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if llm.api_key and self.headers.get("Authorization") != f"Bearer {llm.api_key}":
                    self._json(401, {"error": {"message": "invalid api key"}})
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path == "/health":  # vLLM's readiness probe
                    self._json(200, {})
                elif self.path.rstrip("/") == "/v1/models":
                    llm.model_list_calls += 1
                    entry = {"id": llm.model, "object": "model", "max_model_len": llm.max_model_len}
                    self._json(200, {"object": "list", "data": [entry]})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                prompt = llm._prompt_tokens(body)
                wanted = int(body.get("max_tokens") or 0)
                if prompt + wanted > llm.max_model_len:
                    with llm._lock:
                        llm.requests.append(body)
                    message = (
                        f"This model's maximum context length is {llm.max_model_len} tokens. "
                        f"However, you requested {prompt + wanted} tokens ({prompt} in the "
                        f"messages, {wanted} in the completion)."
                    )
                    self._json(400, {"object": "error", "message": message, "code": 400})
                    return
                text = llm._next_turn(body)
                if text is None:
                    self._json(400, {"error": {"message": "the script has no more turns"}})
                    return
                finish, stop_reason = "stop", None
                for stop in body.get("stop") if llm.honour_stop and body.get("stop") else []:
                    cut = text.find(stop)
                    if cut != -1:
                        text, stop_reason = text[:cut], stop
                        break
                if not llm.report_stop_reason:
                    stop_reason = None
                if body.get("stream"):
                    self._stream(text, finish, stop_reason)
                else:
                    choice = {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                    if llm.report_stop_reason:
                        choice["stop_reason"] = stop_reason
                    self._json(200, {"object": "chat.completion", "model": llm.model, "choices": [choice]})

            def _stream(self, text: str, finish: str, stop_reason: str | None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

                def send(choice: dict[str, Any]) -> None:
                    chunk = {"object": "chat.completion.chunk", "model": llm.model, "choices": [choice]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()

                try:
                    send({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
                    for start in range(0, len(text), llm.chunk_size):
                        if llm.chunk_delay:
                            time.sleep(llm.chunk_delay)
                        piece = text[start : start + llm.chunk_size]
                        send({"index": 0, "delta": {"content": piece}, "finish_reason": None})
                    final: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": finish}
                    if llm.report_stop_reason:
                        final["stop_reason"] = stop_reason
                    send(final)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (cancelled)

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("script", help="JSON file: a list of model turns (strings)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="DeepAnalyze-8B")
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    with open(args.script, encoding="utf-8") as handle:
        turns = json.load(handle)
    llm = ScriptedLLM(turns, model=args.model, chunk_delay=args.chunk_delay)
    if args.port:
        llm._server.server_close()
        llm._server = ThreadingHTTPServer((args.host, args.port), llm._handler())
        llm._server.daemon_threads = True
    print(f"scripted model {args.model} at {llm.url}", flush=True)
    llm._server.serve_forever()


if __name__ == "__main__":
    main()
