"""The test suite's stand-in for the LLM: scripted turns over an OpenAI-compatible server.

``ScriptedLLM(turns)`` is the package's vLLM-like scripted server
(``jupyter_deepanalyze.eval.scripted_server``) replaying ``turns`` in order: each a string,
a ``Fault`` (a stream that breaks: closed mid-token, reset, stalled, junk) or a callable
``turn(request_body) -> str`` (to answer from what the client sent). When the turns run
out, requests get a 400 "the script has no more turns".

Run standalone for manual and browser tests:
``python tests/scripted_llm.py turns.json --port 8000`` (a JSON list of strings).
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from jupyter_deepanalyze.agent import Agent, Task
from jupyter_deepanalyze.eval.scripted_server import Fault, ScriptedServer
from jupyter_deepanalyze.events import Event
from jupyter_deepanalyze.execution import Executor
from jupyter_deepanalyze.llm.openai_compat import OpenAICompatModel

Turn = str | Fault | Callable[[dict[str, Any]], str]


class ScriptedLLM(ScriptedServer):
    """``with ScriptedLLM([...]) as llm:`` serves at ``llm.url`` (``…/v1``)."""

    def __init__(
        self, turns: Sequence[Turn], *, model: str = "DeepAnalyze-8B", chunk_size: int = 7, **options: Any
    ) -> None:
        self.turns = list(turns)
        self._turns_lock = threading.Lock()
        super().__init__(self._next_turn, model=model, chunk_chars=chunk_size, **options)

    def replace_turns(self, turns: Sequence[Turn]) -> None:
        """Serves ``turns`` from now on and forgets the requests received so far."""
        with self._turns_lock:
            self.turns[:] = list(turns)
        with self._lock:
            self.requests.clear()

    def _next_turn(self, body: dict[str, Any]) -> str | Fault | None:
        with self._turns_lock:
            if not self.turns:
                return None
            turn = self.turns.pop(0)
        return turn(body) if callable(turn) else turn


async def run_agent(llm: ScriptedLLM, executor: Executor, task: Task, **options: Any) -> tuple[Agent, list[Event]]:
    """Runs an ``Agent`` (``options``) on ``task`` against ``llm`` to its end: the agent and its events."""
    model = OpenAICompatModel(llm.url)
    agent = Agent(model, executor, **options)
    try:
        events = [event async for event in agent.run(task)]
    finally:
        await model.aclose()
    return agent, events


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve scripted model turns (OpenAI-compatible).")
    parser.add_argument("script", help="JSON file: a list of model turns (strings)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default="DeepAnalyze-8B")
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    args = parser.parse_args()
    with open(args.script, encoding="utf-8") as handle:
        turns = json.load(handle)
    llm = ScriptedLLM(turns, model=args.model, chunk_delay=args.chunk_delay, host=args.host, port=args.port)
    print(f"scripted model {args.model} at {llm.url}", flush=True)
    llm.serve_forever()


if __name__ == "__main__":
    main()
