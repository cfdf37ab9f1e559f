"""vLLM run by the project (``vllm:ID_OR_PATH``): a managed ``vllm serve`` subprocess.

Owns starting ``vllm serve`` on a free port of 127.0.0.1 (never another interface),
waiting for its health check, its log file, stopping it with the server or CLI that
started it, and one-line messages for what usually goes wrong (vLLM not installed, no
GPU, not enough GPU memory, the process exiting early). Requests then go through the
OpenAI-compatible backend.

Also offers ``VLLMEngineModel``, vLLM's in-process async engine, for batch evaluation on
a GPU machine where an HTTP hop per turn is not wanted.

Must not contain agent logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..protocol import Dialect, dialect_for
from . import ContextWindowFullError, GenerationParams, Message, ModelError, ModelUnavailableError
from .chat_template import render_prompt
from .openai_compat import OpenAICompatModel
from .transformers_local import cache_dir

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'jupyter-deepanalyze[vllm]' on a machine with a CUDA GPU"
STARTUP_TIMEOUT = 1800.0  # downloading and compiling an 8B model can take many minutes

_LOG_DIAGNOSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"CUDA out of memory|OutOfMemoryError|insufficient.*memory|No available memory for the cache blocks", re.I
        ),
        "the GPU does not have enough memory for this model (DeepAnalyze-8B needs more than 16 GB; "
        "try --max-model-len, an FP8 KV cache or a quantized model)",
    ),
    (
        re.compile(r"No CUDA GPUs are available|Failed to infer device type|no NVIDIA driver|CUDA driver", re.I),
        "no usable CUDA GPU was found",
    ),
    (re.compile(r"Address already in use", re.I), "the port was taken before vLLM could use it"),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ManagedVLLM:
    """One ``vllm serve`` process listening on 127.0.0.1."""

    def __init__(
        self,
        model: str,
        *,
        served_name: str | None = None,
        executable: str = "vllm",
        extra_args: Sequence[str] = (),
        startup_timeout: float = STARTUP_TIMEOUT,
        log_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.served_name = served_name or Path(model.rstrip("/")).name
        self.executable = executable
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.log_dir = log_dir or cache_dir() / "vllm"
        self.port: int | None = None
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        assert self.port is not None, "not started"
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, port: int) -> list[str]:
        return [
            self.executable, "serve", self.model,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--served-model-name", self.served_name,
            *self.extra_args,
        ]

    async def start(self) -> str:
        """Start vLLM and wait until it answers; returns the base URL."""
        if self._process is not None:
            return self.base_url
        executable = shutil.which(self.executable)
        if executable is None:
            raise ModelUnavailableError(f"vLLM is not installed ({self.executable!r} not found): {INSTALL_HINT}.")
        self.port = free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', self.served_name)}-{self.port}.log"
        with open(self.log_path, "wb") as log_file:
            self._process = subprocess.Popen(
                self.command(self.port),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # stopped as a group: vLLM spawns workers
            )
        log.info("started vLLM (pid %s) for %s; log: %s", self._process.pid, self.model, self.log_path)
        try:
            await self._wait_until_healthy()
        except BaseException:
            await self.stop()
            raise
        return self.base_url

    async def _wait_until_healthy(self) -> None:
        assert self._process is not None and self.log_path is not None
        deadline = time.monotonic() + self.startup_timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise ModelUnavailableError(self._diagnose(f"vLLM exited with status {code}"))
                try:
                    response = await client.get(f"http://127.0.0.1:{self.port}/health")
                    if response.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ModelUnavailableError(
                        self._diagnose(f"vLLM did not become ready within {self.startup_timeout:g} s")
                    )
                await asyncio.sleep(0.5)

    def _diagnose(self, what: str) -> str:
        assert self.log_path is not None
        tail = _log_tail(self.log_path)
        for pattern, meaning in _LOG_DIAGNOSES:
            if pattern.search(tail):
                return f"{what}: {meaning}. Log: {self.log_path}"
        return f"{what}. Log: {self.log_path}"

    async def stop(self, grace: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)


class VLLMServerModel(OpenAICompatModel):
    """The OpenAI-compatible backend on a vLLM this object starts and stops."""

    def __init__(self, model: str, *, server: ManagedVLLM | None = None, **options: Any) -> None:
        self.server = server or ManagedVLLM(model)
        super().__init__("http://127.0.0.1:0/v1", model_name=self.server.served_name, **options)
        self.spec = f"vllm:{model}"

    async def ready(self) -> None:
        if self._ready:
            return
        self.base_url = await self.server.start()
        await super().ready()

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.server.stop()


class VLLMEngineModel:
    """vLLM's in-process async engine (a GPU in this process; for batch evaluation)."""

    def __init__(self, model: str, *, name: str | None = None, dialect: str = "auto", **engine_args: Any) -> None:
        self.source = model
        self.spec = f"vllm:{model}"
        self.name = name or Path(model.rstrip("/")).name
        self.dialect: Dialect = dialect_for(self.name, dialect)
        self._engine_args = engine_args
        self._engine: Any = None
        self._tokenizer: Any = None
        self._context = 0

    async def ready(self) -> None:
        if self._engine is not None:
            return
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError as exc:
            raise ModelUnavailableError(f"vLLM is not installed: {INSTALL_HINT}.") from exc
        args = AsyncEngineArgs(model=self.source, served_model_name=[self.name], **self._engine_args)
        self._engine = AsyncLLMEngine.from_engine_args(args)
        self._tokenizer = await self._engine.get_tokenizer()
        config = await self._engine.get_model_config()
        self._context = int(config.max_model_len)

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        await self.ready()
        from vllm import SamplingParams

        prompt = render_prompt(self._tokenizer, messages, self.dialect)
        used = len(self._tokenizer.encode(prompt, add_special_tokens=False))
        if used >= self._context:
            raise ContextWindowFullError(limit=self._context, needed=used)
        sampling = SamplingParams(
            temperature=params.temperature,
            max_tokens=min(params.max_tokens, self._context - used),
            stop=list(params.stop),
            include_stop_str_in_output=True,  # the turn keeps its </Code>, as the protocol wants
        )
        sent = 0
        try:
            async for output in self._engine.generate(prompt, sampling, request_id=uuid.uuid4().hex):
                text = output.outputs[0].text
                if len(text) > sent:
                    yield text[sent:]
                    sent = len(text)
        except Exception as exc:
            raise ModelError(f"vLLM generation failed: {exc}") from exc
