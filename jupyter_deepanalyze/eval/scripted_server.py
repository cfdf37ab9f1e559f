"""An OpenAI-compatible server that replays scripted turns and behaves like vLLM (NOT a model).

Part of ``jupyter deepanalyze bench`` (it lets the bench measure the harness's own
overhead through the real HTTP path with no model time) and the test suite's stand-in
for the LLM (``tests/scripted_llm.py``). Every turn comes from ``policy(request_body)``.
Where the project depends on vLLM's behaviour, it behaves the same: ``GET /v1/models``
lists the served name and ``max_model_len``; ``GET /health`` answers; ``POST
/v1/chat/completions`` streams (SSE) or answers in one JSON body, cuts the text at the
first ``stop`` string and reports it as ``stop_reason`` (dropped from the text), and
rejects a prompt plus ``max_tokens`` beyond the context window with vLLM's 400 message.
It records every request. A turn may also be a ``Fault``: its stream goes wrong the way a
real server or network can (closed mid-token, reset, stalled, junk), for the tests of
what the client makes of it.

Also owns what the bench replays: ``bench_policy`` (four fixed turns chosen from the
conversation) and the data they run on (``write_bench_csv``, ``write_table_qa_set``).

Never a model default: nothing outside the bench and the tests uses it. It listens on
127.0.0.1 (a free port unless told otherwise) and only while it is used.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Fault:
    """A turn whose stream goes wrong after its first ``after`` characters of ``text``.

    ``kind``: ``close`` ends the connection in the middle of the next event's line (a
    token cut in half; no ``finish_reason``, no ``[DONE]``); ``reset`` does the same with
    a TCP reset; ``stall`` stops sending (the connection stays open) until ``release`` is
    set or ``stall_seconds`` pass, then closes it; ``junk`` sends lines that are no
    events of the expected shape (and bytes that are not UTF-8), then closes.
    """

    text: str
    after: int
    kind: Literal["close", "reset", "stall", "junk"] = "close"
    release: threading.Event | None = None
    stall_seconds: float = 30.0


JUNK_LINES: tuple[bytes, ...] = (
    b"data: {not json\n\n",
    b"data: [1, 2, 3]\n\n",
    b'data: {"choices": "none"}\n\n',
    b'data: {"choices": [{"delta": "text", "finish_reason": 7}]}\n\n',
    b'data: {"choices": [{"delta": {"content": 42}}]}\n\n',
    b"event: ping\n: keep-alive\n\n",
    b"data: \xff\xfe\xfd not utf-8\n\n",
)
"""What a ``junk`` fault sends: nothing a client can take for text or an ending."""

Policy = Callable[[dict[str, Any]], "str | Fault | None"]
"""The next turn for a request body (a ``Fault`` for one that breaks); None when the
script has nothing more to say."""

SERVED_NAME = "deepanalyze-bench-scripted-policy"
"""What the bench's policy calls itself; it names a DeepAnalyze model (native dialect)."""
CHUNK_CHARS = 4
"""Characters per streamed chunk: about one token, as a real server streams."""
CHARS_PER_TOKEN = 4
"""The stand-in tokenizer for the context-window check."""


class ScriptedServer:
    """``with ScriptedServer(policy) as server:`` serves at ``server.url``."""

    def __init__(
        self,
        policy: Policy,
        *,
        model: str = SERVED_NAME,
        max_model_len: int = 32768,
        chunk_chars: int = CHUNK_CHARS,
        chunk_delay: float = 0.0,
        report_stop_reason: bool = True,
        honour_stop: bool = True,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.policy = policy
        self.model = model
        self.max_model_len = max_model_len
        self.chunk_chars = chunk_chars
        self.chunk_delay = chunk_delay
        self.report_stop_reason = report_stop_reason
        self.honour_stop = honour_stop
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.model_list_calls = 0
        self.authorizations: list[str | None] = []
        """The ``Authorization`` header of every request, in order (None when absent)."""
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        characters = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        return characters // CHARS_PER_TOKEN + 1

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

            def _authorized(self) -> bool:
                with server._lock:
                    server.authorizations.append(self.headers.get("Authorization"))
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._json(401, {"error": {"message": "invalid api key"}})
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path == "/health":  # vLLM's readiness probe
                    self._json(200, {})
                elif self.path.rstrip("/") == "/v1/models":
                    with server._lock:
                        server.model_list_calls += 1
                    entry = {"id": server.model, "object": "model", "max_model_len": server.max_model_len}
                    self._json(200, {"object": "list", "data": [entry]})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    server.requests.append(body)
                prompt, wanted = server.prompt_tokens(body), int(body.get("max_tokens") or 0)
                if prompt + wanted > server.max_model_len:
                    message = (
                        f"This model's maximum context length is {server.max_model_len} tokens. "
                        f"However, you requested {prompt + wanted} tokens ({prompt} in the "
                        f"messages, {wanted} in the completion)."
                    )
                    self._json(400, {"object": "error", "message": message, "code": 400})
                    return
                try:
                    text = server.policy(body)
                except Exception as exc:  # a policy bug is reported like a server error
                    self._json(500, {"error": {"message": f"scripted policy failed: {exc}"}})
                    return
                if text is None:
                    self._json(400, {"error": {"message": "the script has no more turns"}})
                    return
                if isinstance(text, Fault):
                    self._faulty_stream(text)
                    return
                stop_reason = None
                for stop in body.get("stop") or [] if server.honour_stop else []:
                    cut = text.find(stop)
                    if cut != -1:
                        text, stop_reason = text[:cut], stop
                        break
                if body.get("stream"):
                    self._stream(text, stop_reason)
                    return
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
                if server.report_stop_reason:
                    choice["stop_reason"] = stop_reason
                self._json(200, {"object": "chat.completion", "model": server.model, "choices": [choice]})

            def _start_stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

            @staticmethod
            def _chunk(choice: dict[str, Any]) -> bytes:
                payload = {"object": "chat.completion.chunk", "model": server.model, "choices": [choice]}
                return f"data: {json.dumps(payload)}\n\n".encode()

            def _text_parts(self, text: str) -> list[bytes]:
                size = server.chunk_chars
                opening = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                parts = [self._chunk(opening)]
                parts += [
                    self._chunk({"index": 0, "delta": {"content": text[i : i + size]}, "finish_reason": None})
                    for i in range(0, len(text), size)
                ]
                return parts

            def _send(self, parts: list[bytes]) -> None:
                for part in parts:
                    if server.chunk_delay:  # a slow model: each chunk on its own
                        time.sleep(server.chunk_delay)
                        self.wfile.flush()
                    self.wfile.write(part)
                self.wfile.flush()

            def _stream(self, text: str, stop_reason: str | None) -> None:
                self._start_stream()
                final: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": "stop"}
                if server.report_stop_reason:
                    final["stop_reason"] = stop_reason
                try:
                    self._send([*self._text_parts(text), self._chunk(final), b"data: [DONE]\n\n"])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (cancelled)

            def _faulty_stream(self, fault: Fault) -> None:
                """Stream ``fault.text[:after]``, then break as ``fault.kind`` says."""
                self._start_stream()
                sent, rest = fault.text[: fault.after], fault.text[fault.after :]
                following = self._chunk({"index": 0, "delta": {"content": rest[: server.chunk_chars]}})
                try:
                    self._send(self._text_parts(sent))
                    if fault.kind in ("close", "reset"):
                        self.wfile.write(following[: len(following) // 2])  # mid-token, mid-line
                        self.wfile.flush()
                    elif fault.kind == "junk":
                        self._send(list(JUNK_LINES))
                    elif fault.release is not None:
                        fault.release.wait(fault.stall_seconds)
                    else:
                        time.sleep(fault.stall_seconds)
                    if fault.kind == "reset":  # SO_LINGER 0: closing sends a TCP reset, not a FIN
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        os.close(self.connection.detach())
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client gave up first

        return Handler


# ------------------------------------------------------- the bench's script and data

ROWS = 10_000
"""Rows of the bench table."""
GROUPS = 50
"""Distinct keys in the bench table."""
CSV_NAME = "bench.csv"

_ANALYZE = (
    "<Analyze>\nThe task asks for a statistic of one group in a table. First load the "
    "file and check its shape and column types, then summarise the groups, then compute "
    "the requested mean for the named key and report it with the required precision. "
    "I will keep each step small and print only what I need to read.\n</Analyze>\n"
)
_UNDERSTAND = (
    "<Understand>\nThe table has the expected columns: a string key with a few dozen "
    "groups and a numeric value. No missing values are shown, so the mean can be taken "
    "directly after filtering on the key.\n</Understand>\n"
)


def _code(body: str) -> str:
    return f"<Code>\n```python\n{body}\n```\n</Code>"


def bench_policy(request: dict[str, Any]) -> str:
    """The bench's scripted turns, chosen from the conversation so far (stateless).

    Round 1 loads the file named in the first message, round 2 summarises the groups,
    round 3 computes the mean of the key the question names, round 4 answers with the
    value the kernel printed, as ``@answer[value]``.
    """
    messages = request.get("messages", [])
    first = next((m["content"] for m in messages if m.get("role") == "user"), "")
    round_index = sum(m.get("role") == "assistant" for m in messages)
    file_match = re.search(r'"name": "([^"]+)"', first)
    data_file = file_match.group(1) if file_match else CSV_NAME
    key_match = re.search(r"key (k\d+)", first)
    key = key_match.group(1) if key_match else "k00"
    if round_index == 0:
        return _ANALYZE + _code(
            f"import pandas as pd\ndf = pd.read_csv({data_file!r})\nprint(df.shape)\nprint(df.dtypes)"
        )
    if round_index == 1:
        return _UNDERSTAND + _code(
            "summary = df.groupby('key')['value'].agg(['mean', 'count'])\nprint(summary.head())"
        )
    if round_index == 2:
        return _ANALYZE + _code(f"print(round(df.loc[df['key'] == {key!r}, 'value'].mean(), 4))")
    value = str(messages[-1].get("content", "")).strip()
    return (
        f"<Answer>\n# Result\n\nThe mean value for key `{key}` is {value}.\n\n@answer[{value}]\n</Answer>"
    )


def write_bench_csv(folder: Path, rows: int = ROWS) -> Path:
    """A deterministic table of ``rows`` rows: ``id``, ``key`` (50 groups), ``value``, ``flag``."""
    path = folder / CSV_NAME
    lines = ["id,key,value,flag"]
    for i in range(rows):
        lines.append(f"{i},k{(i * 7) % GROUPS:02d},{((i * 7919) % 10007) / 100:.2f},{'yes' if i % 3 else 'no'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_table_qa_set(folder: Path, tasks: int) -> Path:
    """A table-QA set of ``tasks`` questions on the bench table, answers computed here."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    csv = write_bench_csv(folder)
    frame = pd.read_csv(csv)
    with (folder / "questions.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(tasks):
            key = f"k{(i * 11) % GROUPS:02d}"
            answer = round(frame.loc[frame["key"] == key, "value"].mean(), 4)
            record = {
                "id": f"q{i}",
                "question": f"What is the mean value for key {key}? Round it to 4 decimal places.",
                "files": [CSV_NAME],
                "answers": [str(answer)],
                "level": ("easy", "medium")[i % 2],
            }
            handle.write(json.dumps(record) + "\n")
    return folder
