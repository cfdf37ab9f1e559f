"""The trust figures of issue #11, measured: ``python -m jupyter_deepanalyze.eval.bench_trust``.

Owns measuring what the fault tests only bound generously: parsing 1 MB of model text
(untagged and tagged, in 7-character chunks); a real Jupyter server (``LocalServer``) while
a run streams those megabytes from the scripted model — its ``/api/status`` latency, the
event-loop stall a user would feel; cancelling a run (an infinite loop, and code that
ignores the interrupt); listing a 100 000-file folder for a run; and the server's memory
(RSS) after runs with 1 MB questions and 10 MB requests (refused with 413). It prints one
table and, with ``--json PATH``, writes the numbers.

Must not be a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nbformat
import psutil

from ..protocol import SegmentParser
from .local_server import LocalServer
from .scripted_server import ScriptedServer

MEGABYTE_OF_WORDS = "word " * 200_000
CHUNK = 7
ANSWER = "<Answer>\nDone.\n</Answer>"
LOOP = "<Code>\n```python\nprint('looping', flush=True)\nwhile True:\n    pass\n```\n</Code>"
STUBBORN = (
    "<Code>\n```python\nimport time\nprint('ignoring', flush=True)\nwhile True:\n"
    "    try:\n        time.sleep(0.05)\n    except KeyboardInterrupt:\n        pass\n```\n</Code>"
)


def parse_seconds(text: str, repeat: int = 3) -> float:
    """Best of ``repeat``: ``text`` fed to a ``SegmentParser`` in 7-character chunks."""
    times = []
    for _ in range(repeat):
        parser = SegmentParser()
        started = time.perf_counter()
        for i in range(0, len(text), CHUNK):
            parser.feed(text[i : i + CHUNK])
        parser.close()
        times.append(time.perf_counter() - started)
    return min(times)


class Turns:
    """The scripted model's turns, replaced between measurements."""

    def __init__(self) -> None:
        self.turns: list[str] = []

    def __call__(self, body: dict[str, Any]) -> str | None:
        return self.turns.pop(0) if self.turns else None


class StatusProbe:
    """``GET /api/status`` every 20 ms while active: the latencies a user's page would see."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.latencies: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        while True:
            started = time.perf_counter()
            await self.client.get("/api/status")
            self.latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)

    def __enter__(self) -> StatusProbe:
        self._task = asyncio.ensure_future(self._probe())
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> dict[str, float]:
        values = self.latencies or [0.0]
        return {"worst_ms": max(values) * 1000, "median_ms": statistics.median(values) * 1000, "n": len(values)}


@asynccontextmanager
async def bench_server(folder: Path) -> AsyncIterator[tuple[LocalServer, httpx.AsyncClient, Turns, str]]:
    turns = Turns()
    with ScriptedServer(turns, model="DeepAnalyze-8B", chunk_chars=CHUNK, max_model_len=4_000_000) as model:
        for name in ("root", "runs", "home"):
            (folder / name).mkdir()
        nbformat.write(nbformat.v4.new_notebook(), folder / "root" / "bench.ipynb")
        server = LocalServer(folder / "root", folder / "runs", model.url, folder / "home").start()
        try:
            async with server.client() as client:
                kernel_id = await server.open_notebook(client, "bench.ipynb")
                yield server, client, turns, kernel_id
        finally:
            server.stop(signal.SIGTERM)


async def start_run(client: httpx.AsyncClient, kernel_id: str, **body: Any) -> str:
    reply = await client.post("/deepanalyze/runs", json={"question": "Q", "kernel_id": kernel_id, **body})
    reply.raise_for_status()
    return str(reply.json()["run_id"])


async def run_to_end(server: LocalServer, client: httpx.AsyncClient, kernel_id: str, **body: Any) -> list[Any]:
    return await server.follow(await start_run(client, kernel_id, **body))


async def timed(action: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await action()
    return time.perf_counter() - started, result


def rss_mib(server: LocalServer) -> float:
    return psutil.Process(server.pid).memory_info().rss / 2**20


async def measure(folder: Path, log: Callable[[str], None]) -> dict[str, Any]:
    numbers: dict[str, Any] = {}
    log("parsing 1 MB in 7-character chunks")
    numbers["parse_untagged_s"] = parse_seconds(MEGABYTE_OF_WORDS)
    numbers["parse_tagged_s"] = parse_seconds(f"<Analyze>{MEGABYTE_OF_WORDS}</Analyze>")
    async with bench_server(folder) as (server, client, turns, kernel_id):
        turns.turns = [ANSWER]  # warm up: the model's client, the kernel's attachment, lazy imports
        await run_to_end(server, client, kernel_id)
        numbers["rss_start_mib"] = rss_mib(server)
        with StatusProbe(client) as idle:
            await asyncio.sleep(1.0)
        numbers["status_idle"] = idle.summary()

        log("a run streaming 1 MB untagged, then 1 MB tagged")
        turns.turns = [MEGABYTE_OF_WORDS, f"<Analyze>{MEGABYTE_OF_WORDS}</Analyze>", ANSWER]
        with StatusProbe(client) as during:
            seconds, events = await timed(lambda: run_to_end(server, client, kernel_id))
        numbers["megabyte_run_s"] = seconds
        numbers["megabyte_run_status"] = events[-1]["status"]
        numbers["status_during_megabyte_run"] = during.summary()

        log("cancel: an infinite loop, five times; code that ignores the interrupt, once")
        cancels = []
        for _ in range(5):
            turns.turns = [LOOP]
            run_id = await start_run(client, kernel_id)
            await server.follow(run_id, until="output")
            seconds, reply = await timed(lambda run_id=run_id: client.post(f"/deepanalyze/runs/{run_id}/cancel"))
            cancels.append(seconds)
        numbers["cancel_loop_s"] = {"median": statistics.median(cancels), "worst": max(cancels)}
        turns.turns = [STUBBORN]
        run_id = await start_run(client, kernel_id)
        await server.follow(run_id, until="output")
        seconds, reply = await timed(lambda: client.post(f"/deepanalyze/runs/{run_id}/cancel"))
        numbers["cancel_ignored_s"] = seconds
        refused = await client.post("/deepanalyze/runs", json={"question": "Q", "kernel_id": kernel_id})
        numbers["run_on_busy_kernel_status"] = refused.status_code
        restarted = await client.post(f"/api/kernels/{kernel_id}/restart")
        restarted.raise_for_status()

        log("listing a folder of 100 000 files for a run")
        big = folder / "root" / "big"
        big.mkdir()
        for i in range(100_000):
            (big / f"f{i:06d}.csv").touch()
        turns.turns = [ANSWER]
        with StatusProbe(client) as listing:
            seconds, run_id = await timed(lambda: start_run(client, kernel_id, files=["big"]))
        numbers["listing_post_s"] = seconds
        numbers["status_during_listing"] = listing.summary()
        await server.follow(run_id)

        log("sizes: five runs with 1 MB questions, five 10 MB requests")
        question = "How big? " + "x" * 1_000_000
        for _ in range(5):
            turns.turns = [ANSWER]
            await run_to_end(server, client, kernel_id, question=question)
        numbers["rss_after_questions_mib"] = rss_mib(server)
        too_large = [
            (await client.post("/deepanalyze/runs", content=json.dumps({"question": "x" * 10_000_000}))).status_code
            for _ in range(5)
        ]
        numbers["ten_megabyte_requests"] = too_large
        listed = (await client.get("/deepanalyze/runs")).json()["runs"]
        numbers["run_list_bytes"] = len(json.dumps(listed))
        numbers["rss_after_sizes_mib"] = rss_mib(server)
    return numbers


def render(numbers: dict[str, Any]) -> str:
    lines = [
        "| measurement | value |",
        "|---|---|",
        f"| parse 1 MB untagged, 7-char chunks | {numbers['parse_untagged_s'] * 1000:.0f} ms |",
        f"| parse 1 MB tagged, 7-char chunks | {numbers['parse_tagged_s'] * 1000:.0f} ms |",
        f"| run streaming 1 MB untagged + 1 MB tagged (end to end) | {numbers['megabyte_run_s']:.1f} s "
        f"({numbers['megabyte_run_status']}) |",
    ]
    for key, label in (
        ("status_idle", "/api/status latency, idle server"),
        ("status_during_megabyte_run", "/api/status latency during that run"),
        ("status_during_listing", "/api/status latency while a 100 000-file folder is listed"),
    ):
        probe = numbers[key]
        lines.append(f"| {label} | worst {probe['worst_ms']:.0f} ms, median {probe['median_ms']:.1f} ms "
                     f"({probe['n']} requests) |")
    cancel = numbers["cancel_loop_s"]
    lines += [
        f"| cancel an infinite loop (POST …/cancel until the run ended) | median {cancel['median'] * 1000:.0f} ms, "
        f"worst {cancel['worst'] * 1000:.0f} ms |",
        f"| cancel code that ignores the interrupt (ends 'cancelled', kernel reported busy) | "
        f"{numbers['cancel_ignored_s'] * 1000:.0f} ms; a new run then: HTTP {numbers['run_on_busy_kernel_status']} |",
        f"| POST a run on a 100 000-file folder | {numbers['listing_post_s'] * 1000:.0f} ms |",
        f"| server RSS: after a first run / then after 5 runs with 1 MB questions / then after 5 × 10 MB "
        f"requests (HTTP {sorted(set(numbers['ten_megabyte_requests']))}) | {numbers['rss_start_mib']:.0f} / "
        f"{numbers['rss_after_questions_mib']:.0f} / {numbers['rss_after_sizes_mib']:.0f} MiB |",
        f"| GET /deepanalyze/runs after them | {numbers['run_list_bytes'] / 1024:.1f} KiB |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure the trust figures of issue #11.")
    parser.add_argument("--json", default="", help="also write the numbers to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepanalyze-trust-") as folder:
        numbers = asyncio.run(measure(Path(folder), lambda line: print(f"... {line}", flush=True)))
    print(render(numbers))
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
