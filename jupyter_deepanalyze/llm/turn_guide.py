"""Structure-guided decoding: the tag skeleton of a turn is forced, its content generated.

Owns the grammar of one DeepAnalyze turn (GBNF, the llama.cpp grammar format) and
``TurnGuide``, which applies it token by token with llguidance (the structured-output
engine vLLM also uses) through any backend's logits hook. A very small model then
cannot skip a tag, write its own ``<Execute>`` or ramble outside the format; every word
inside the tags, the code included, is still the model's.

The first turn of a run is ``<Analyze>`` then ``<Code>``; a turn that follows an
execution is ``<Understand>`` then either another ``<Code>`` or the ``<Answer>`` (the
model chooses). Lengths are bounded so a turn always closes within a small model's
token budget.

Must not contain agent logic, nor choose tokens: the backend samples from what is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import Message, ModelUnavailableError

INSTALL_HINT = "pip install llguidance"

_RULES = r"""
analyze ::= "<Analyze>\n" prose "\n</Analyze>\n"
understand ::= "<Understand>\n" prose "\n</Understand>\n"
code ::= "<Code>\n```python\n" codeline{1,12} "```\n</Code>"
answer ::= "<Answer>\n" prose ("\n" prose){0,5} "\n</Answer>"
prose ::= [^<\n ] [^<\n]{0,300}
codeline ::= [^`\n] [^\n]{0,160} "\n"
"""

FIRST_TURN_GRAMMAR = 'root ::= analyze code\n' + _RULES
"""A run's first turn: plan, then code."""
LATER_TURN_GRAMMAR = 'root ::= understand (code | answer)\n' + _RULES
"""A turn after an execution: read the output, then more code or the answer."""


def follows_execution(messages: Sequence[Message]) -> bool:
    """Whether the turn to write answers an execution (either dialect's layout)."""
    if not messages:
        return False
    last = messages[-1]
    return last["role"] == "execute" or last["content"].lstrip().startswith("<Execute>")


def turn_grammar(messages: Sequence[Message]) -> str:
    return LATER_TURN_GRAMMAR if follows_execution(messages) else FIRST_TURN_GRAMMAR


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError as exc:
        raise ModelUnavailableError(f"Guided decoding needs {INSTALL_HINT} ({exc}).") from exc
    return llguidance


class TurnGuide:
    """One turn's grammar, matched against the tokens a backend generates.

    ``tokenizer`` is an ``llguidance.LLTokenizer`` for the model's vocabulary (built once
    per model: ``llguidance.hf.from_tokenizer`` or ``llguidance.llamacpp``).
    """

    def __init__(self, tokenizer: Any, grammar: str) -> None:
        llguidance = _llguidance()
        self._matcher = llguidance.LLMatcher(tokenizer, llguidance.grammar_from("gbnf", grammar), log_level=0)
        if self._matcher.is_error():
            raise ValueError(f"bad turn grammar: {self._matcher.get_error()}")

    def consume(self, tokens: Sequence[int]) -> None:
        """Advance past tokens the backend generated (they were allowed)."""
        if tokens and not self._matcher.consume_tokens([int(t) for t in tokens]):
            raise ValueError(f"a token outside the turn grammar: {self._matcher.get_error()}")

    @property
    def finished(self) -> bool:
        """The grammar is complete: the turn has nothing more to say."""
        return bool(self._matcher.is_stopped())

    def allowed(self, vocab_size: int) -> np.ndarray:
        """A boolean mask over ``vocab_size`` logits: which tokens may come next."""
        bits = np.unpackbits(np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        mask = np.zeros(vocab_size, dtype=bool)
        size = min(vocab_size, bits.size)
        mask[:size] = bits[:size].astype(bool)
        return mask

    def mask_logits(self, logits: np.ndarray) -> np.ndarray:
        """``logits`` (one row, numpy) with every disallowed token set to ``-inf``, in place."""
        logits[~self.allowed(logits.shape[-1])] = -np.inf
        return logits
