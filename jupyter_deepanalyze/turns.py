"""Reading one model turn off its stream: ``read_turn``.

Owns how streamed text becomes a turn (PROTOCOL.md, "The loop"): every chunk cleaned of
lone surrogates and fed to the ``SegmentParser``; delta text coalesced (at most every
``DELTA_FLUSH_SECONDS``) and handed on with the tag of the segment it belongs to;
finished segments handed on as they finish; the turn over at the first code block or a
closed answer (what a server that does not stop there sends after it is dropped);
``</Code>`` closed when ``max_tokens`` cut a block; the event loop given a turn at least
every ``YIELD_SECONDS`` of a stream that arrives faster than it is parsed; and a stream
that broke off (``StreamCutOff``) closed for the sinks — its unfinished segment handed on
as such, never as a finished one — before the error goes on to the caller.

Must not emit events or act on a turn: the agent does, through the callbacks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .llm import StreamCutOff
from .protocol import CODE_CLOSE, Segment, SegmentDelta, SegmentParser
from .sanitize import clean_text

DELTA_FLUSH_SECONDS = 0.05
"""Streamed text is sent to sinks at most this often (tokens are coalesced)."""
YIELD_SECONDS = 0.02
"""A stream arriving faster than it is parsed is read without ever waiting: the turn lets
the event loop run other work at least this often (nothing the model sends stalls a server)."""


@dataclass(frozen=True)
class TurnSink:
    """Where a turn's pieces go as they are read."""

    delta: Callable[[str | None, str], None]
    """Text of the segment in progress, with its tag."""
    segment: Callable[[Segment], None]
    """A segment that just finished."""
    unfinished: Callable[[Segment], None]
    """The segment a cut-off stream left open (shown, never acted on)."""


async def read_turn(stream: AsyncIterator[str], sink: TurnSink) -> tuple[str, list[Segment]]:
    """The turn's text (as it goes into the history) and its finished segments."""
    parser = SegmentParser()
    chunks: list[str] = []
    segments: list[Segment] = []
    # Text of the pending deltas (strings, not delta objects: a fast stream leaves nothing
    # for the garbage collector to walk) and the tag they belong to.
    pending: list[str] = []
    pending_tag: list[str | None] = [None]
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        if pending:
            # Every pending delta belongs to the segment in progress (a finished segment
            # flushes first): its tag is theirs, not whatever the parser has opened since.
            sink.delta(pending_tag[0], "".join(pending))
            pending.clear()
        last_flush = time.monotonic()

    def handle(items: list[SegmentDelta | Segment]) -> bool:
        for item in items:
            if isinstance(item, SegmentDelta):
                if not pending:
                    pending_tag[0] = item.tag
                pending.append(item.text)
                continue
            flush()
            segments.append(item)
            sink.segment(item)
            if item.tag == "Code" or (item.tag == "Answer" and item.closed):
                return True  # the turn is over: code to run, or the final answer
        if time.monotonic() - last_flush >= DELTA_FLUSH_SECONDS:
            flush()
        return False

    ended = False
    try:
        last_yield = time.monotonic()
        async for piece in stream:
            chunk = clean_text(piece)
            chunks.append(chunk)
            if handle(parser.feed(chunk)):
                ended = True
                break
            if time.monotonic() - last_yield >= YIELD_SECONDS:
                await asyncio.sleep(0)  # a yield to the loop, not a wait
                last_yield = time.monotonic()
    except StreamCutOff:
        # What streamed was shown as it came; nothing of it is acted on.
        rest = parser.close()
        handle([item for item in rest if isinstance(item, SegmentDelta)])
        flush()
        for segment in rest:
            if isinstance(segment, Segment):
                sink.unfinished(segment)
        raise
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    turn = "".join(chunks)
    if ended:
        # Anything after the first </Code> was not produced by a model that stopped
        # there (vLLM does): the next round answers the code. After </Answer> the run
        # is over, so the rest of the stream is not waited for either.
        tag = segments[-1].tag
        closing = f"</{tag}>"
        turn = turn[: turn.index(closing, turn.index(f"<{tag}>")) + len(closing)]
    else:
        handle(parser.close())
        flush()
        if segments and segments[-1].tag == "Code" and not segments[-1].closed:
            turn += CODE_CLOSE  # cut off by max_tokens: close it so history stays well-formed
    return turn, segments
