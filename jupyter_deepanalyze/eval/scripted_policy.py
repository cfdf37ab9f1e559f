"""The benchmark's scripted policy: a zero-latency OpenAI-compatible server (NOT a model).

Part of ``jupyter deepanalyze bench`` only: it lets the bench measure the harness's own
overhead through the real HTTP path (``OpenAICompatModel`` → 127.0.0.1 → SSE stream)
with no model time at all. It answers ``GET /v1/models`` and streaming
``POST /v1/chat/completions``; each turn comes from ``policy(request_body)``, so one
policy serves concurrent conversations (it reads the round and the last execution
output from the messages it is sent). The text is streamed in token-sized chunks, cut at
the first ``stop`` string, which is reported as vLLM's ``stop_reason``.

Never a model default: nothing outside the bench and tests uses it. It listens on
127.0.0.1 on a free port and only while the bench runs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Policy = Callable[[dict[str, Any]], str]

SERVED_NAME = "deepanalyze-bench-scripted-policy"
"""What the policy calls itself; it names a DeepAnalyze model so the native dialect is used."""
CHUNK_CHARS = 4
"""Characters per streamed chunk: about one token, as a real server streams."""


class ScriptedPolicyServer:
    """``with ScriptedPolicyServer(policy) as server:`` serves at ``server.url``."""

    def __init__(self, policy: Policy, *, chunk_chars: int = CHUNK_CHARS) -> None:
        self.policy = policy
        self.chunk_chars = chunk_chars
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-policy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ScriptedPolicyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

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

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": SERVED_NAME, "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    server.requests += 1
                try:
                    text = server.policy(body)
                except Exception as exc:  # a policy bug is reported like a server error
                    self._json(500, {"error": {"message": f"scripted policy failed: {exc}"}})
                    return
                stop_reason = None
                for stop in body.get("stop") or []:
                    cut = text.find(stop)
                    if cut != -1:
                        text, stop_reason = text[:cut], stop
                        break
                self._stream(text, stop_reason)

            def _stream(self, text: str, stop_reason: str | None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

                def chunk(choice: dict[str, Any]) -> bytes:
                    payload = {"object": "chat.completion.chunk", "model": SERVED_NAME, "choices": [choice]}
                    return f"data: {json.dumps(payload)}\n\n".encode()

                size = server.chunk_chars
                parts = [chunk({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})]
                parts += [
                    chunk({"index": 0, "delta": {"content": text[i : i + size]}, "finish_reason": None})
                    for i in range(0, len(text), size)
                ]
                parts.append(chunk({"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": stop_reason}))
                parts.append(b"data: [DONE]\n\n")
                try:
                    for part in parts:
                        self.wfile.write(part)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading

        return Handler
