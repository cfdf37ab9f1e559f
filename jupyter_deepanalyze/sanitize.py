"""Text from outside, made safe to keep, show and send: no lone surrogates, no secrets.

Owns ``clean_text`` — a lone UTF-16 surrogate (which a model server's JSON can carry but
no UTF-8 file, notebook or websocket frame can) becomes U+FFFD — and ``Redactor``: every
configured secret (API keys, the gateway token) in a text becomes ``***``. The agent
passes everything a run produces through one ``Redactor`` (model text, outputs,
feedback, every event), so a key that reaches a kernel's output anyway is in no event,
run log, notebook, or the next request to the model; the server cleans request bodies.

Must not do I/O: everything here is a pure function of its arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "***"
MIN_SECRET_CHARS = 4
"""Shorter secrets are not redacted: replacing every "ab" would garble all output."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (the rest unchanged)."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


class Redactor:
    """Replaces configured secrets with ``***`` (and lone surrogates with U+FFFD)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        unique = {secret for secret in secrets if secret and len(secret) >= MIN_SECRET_CHARS}
        self.secrets = sorted(unique, key=len, reverse=True)  # a key containing another goes first

    def text(self, text: str) -> str:
        text = clean_text(text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every string in it (in lists and dict values, at any depth) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(item) for item in value)
        return value
