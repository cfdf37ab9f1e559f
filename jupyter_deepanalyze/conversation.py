"""Follow-ups (PROTOCOL.md, "Follow-ups"): a finished run's conversation, continued.

Owns ``Conversation`` (a finished run's id and its messages as they were sent), the
messages a follow-up starts from (the parent's, then one new user message built like a
first message), and the rule that makes a history fit the context window again: the
oldest execute outputs are shortened first, head and tail kept with a line saying how
much was cut (``feedback.cap_output``), never a user message or a model turn.

Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .feedback import cap_output
from .protocol import Dialect

Message = Mapping[str, str]

SHORTENED_OUTPUT_CHARS = 1000
"""What is kept of an execute output that is shortened (head and tail)."""
SHORTENED_ABOVE_CHARS = 2 * SHORTENED_OUTPUT_CHARS
"""Only outputs longer than this are shortened (a shortened one never is again)."""
CHARS_PER_TOKEN = 4
"""Characters freed per token the conversation is over (a rough count: when too few are
freed, the next request says so and the next oldest output is shortened)."""
TURN_ROOM_TOKENS = 1024
"""Tokens left free for the model's next turn, beyond what the window is over by."""


@dataclass(frozen=True)
class Conversation:
    """A finished run's conversation: continue it with ``Task(..., follows=conversation)``."""

    run_id: str
    messages: tuple[Message, ...]

    @classmethod
    def of(cls, run_id: str, messages: Sequence[Message]) -> Conversation:
        return cls(run_id, tuple({"role": str(m["role"]), "content": str(m["content"])} for m in messages))


def follow_up_messages(dialect: Dialect, history: Sequence[Message], first_message: str) -> list[dict[str, str]]:
    """The messages of a follow-up's first request: ``history`` as it was sent, then the
    new question as a user message (``first_message``, built like a run's first one).

    A history without messages (a run that ended before the model was asked anything)
    starts the conversation afresh, with the dialect's opening messages.
    """
    if not history:
        return dialect.initial_messages(first_message)
    return [dict(m) for m in history] + [{"role": "user", "content": first_message}]


def chars_to_free(limit: int | None, needed: int | None) -> int | None:
    """How many characters of history to cut when a conversation of ``needed`` tokens
    met a window of ``limit``; None when the backend did not say (cut one output)."""
    if limit is None or needed is None:
        return None
    return (max(needed - limit, 0) + min(TURN_ROOM_TOKENS, limit // 4)) * CHARS_PER_TOKEN


def shorten_history(
    messages: Sequence[Message], dialect: Dialect, chars: int | None = None
) -> list[dict[str, str]] | None:
    """``messages`` with their oldest long execute outputs shortened, until ``chars``
    characters are freed (``None``: one output); None when none is left to shorten.

    An output longer than ``SHORTENED_ABOVE_CHARS`` keeps ``SHORTENED_OUTPUT_CHARS`` of
    its head and tail and a line saying how many characters were left out.
    """
    shortened = [dict(m) for m in messages]
    freed, cut = 0, 0
    for index, message in enumerate(shortened):
        output = dialect.execute_output(message)
        if output is None or len(output) <= SHORTENED_ABOVE_CHARS:
            continue
        short = cap_output(output, SHORTENED_OUTPUT_CHARS)
        shortened[index] = dialect.execute_message(short)
        freed += len(output) - len(short)
        cut += 1
        if chars is None or freed >= chars:
            break
    return shortened if cut else None
