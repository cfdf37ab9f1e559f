"""Text generated on a worker thread, streamed to the event loop: one rule for every
in-process backend (transformers, llama.cpp).

Owns starting the worker, handing its pieces to the loop, failing with ``ModelError``
when it raises, stopping at a stop string (which may arrive mid-token: the rest is not
the turn), and always stopping and joining the worker when the stream ends, is closed or
is cancelled — so the model is free for the next turn and no generation thread outlives
the interpreter.

Must not know which library generates the text.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence

from . import ModelError

PieceQueue = asyncio.Queue[str | BaseException | None]
Generate = Callable[[PieceQueue, asyncio.AbstractEventLoop, threading.Event], None]
"""``generate(queue, loop, stop)``: runs on the worker; puts each piece of text (then
``None``, or an exception) with ``loop.call_soon_threadsafe(queue.put_nowait, …)`` and
checks ``stop`` after every token."""


async def stream_generation(generate: Generate, stop_strings: Sequence[str], *, name: str) -> AsyncIterator[str]:
    """The pieces ``generate`` produces on a thread named ``name``, as they come."""
    queue: PieceQueue = asyncio.Queue()
    stop = threading.Event()
    worker = threading.Thread(target=generate, args=(queue, asyncio.get_running_loop(), stop), name=name, daemon=True)
    worker.start()
    text = ""
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise ModelError(f"Generation failed: {type(item).__name__}: {item}") from item
            text += item
            yield item
            if any(s in text for s in stop_strings):
                break  # the stop string may arrive mid-token: the rest is not the turn
    finally:
        stop.set()
        await asyncio.to_thread(worker.join)
