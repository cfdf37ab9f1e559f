"""Multi-turn rollouts in token space against the kernel environment.

Owns the episode loop of RL: the model's tokens are kept exactly as generated (never
re-tokenized), each turn stops on ``</Code>`` or EOS; after a ``</Code>`` the first code
block runs in the episode's kernel and the observation
``\\n<Execute>\\n…\\n</Execute>\\n`` is tokenized and appended with mask 0 (and logprob
0); an ``<Answer>`` ends the episode, as do ``max_turns`` model turns and
``max_completion_length`` tokens. How a turn without code, an empty output and the
answer are treated is ``RolloutConfig``'s choice (ours, or the reference's RL
environment). Episodes run in lockstep waves (one batched generation per turn), at most
as many at once as the environment has kernels.

The generation function is injected (``generation.py``: HF ``generate`` on CPU, vLLM on
GPUs). Must not compute rewards or know about trainers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from jupyter_deepanalyze.llm.chat_template import render_prompt
from jupyter_deepanalyze.protocol import NATIVE

from .env import EnvironmentThread, EpisodeStats, KernelEnvironment, KernelEpisode, StepResult, observation_text


@dataclass
class Generation:
    """One model turn: the sampled tokens (a stop token included) and their logprobs."""

    token_ids: list[int]
    logprobs: list[float]


class GenerateFn(Protocol):
    """Continue each context by one turn, at most ``max_new_tokens[i]`` tokens for context i.

    A turn ends after the first stop token (``</Code>`` or EOS), which is included.
    """

    def __call__(self, contexts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[Generation]: ...


NO_CODE_FEEDBACK = "[Error]:\nNo code is provided, so the execution results is empty."
"""What the reference's RL environment tells a turn with neither code nor an answer."""


@dataclass
class RolloutConfig:
    """Limits of one episode, and how it treats the turns the reference treats differently.

    The defaults are the product's loop; ``RolloutConfig.reference()`` values are the
    reference's RL environment (SkyRL, PROTOCOL.md "Training-time facts").
    """

    max_turns: int = 30
    """Model turns at most (the reference's 30)."""
    max_completion_length: int = 8192
    """Tokens after the prompt at most: model turns and observations together."""
    max_turn_tokens: int | None = None
    """Tokens of one model turn at most; None: whatever the completion budget leaves."""
    answer_end: Literal["answer_tag", "closed_answer"] = "answer_tag"
    """``answer_tag``: a turn with ``<Answer>`` ends the episode (as the agent loop ends a
    run). ``closed_answer`` (reference): only a turn with both ``<Answer>`` and
    ``</Answer>`` does, and its tokens after the first ``</Answer>`` are cut (an EOS the
    model wrote right after it is kept)."""
    no_code_turn: Literal["end", "error", "continue"] = "end"
    """A turn that ends (EOS) with neither code nor an ending answer: ``end`` ends the
    episode; ``error`` (reference) appends the observation ``NO_CODE_FEEDBACK``, counts a
    failed execution and goes on; ``continue`` goes on with no observation."""
    empty_output: Literal["observe", "drop"] = "observe"
    """An execution that printed nothing: ``observe`` appends ``<Execute>`` with nothing
    inside (what the served model sees); ``drop`` (reference) appends no observation and
    counts the execution as failed."""

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.max_completion_length < 1:
            raise ValueError("rollout.max_turns and rollout.max_completion_length must be at least 1")

    @classmethod
    def reference(cls, **limits: Any) -> RolloutConfig:
        return cls(answer_end="closed_answer", no_code_turn="error", empty_output="drop", **limits)


@dataclass
class EpisodeSpec:
    """What one episode starts from: the prompt's tokens and the task's data files."""

    prompt_ids: list[int]
    files: list[str | Path] = field(default_factory=list)
    name: str | None = None


@dataclass
class EpisodeResult:
    """A finished episode, in token space and as text.

    ``completion_mask`` is 1 on the model's tokens and 0 on observation tokens;
    ``logprobs`` are the sampling logprobs of the model's tokens (0.0 on observations).
    ``feedbacks`` are the texts of the executions (and of ``NO_CODE_FEEDBACK`` for turns
    without code), ``code_results`` whether each passed. ``stop_reason`` is ``answer``, ``eos``,
    ``max_turns``, ``max_length`` or ``kernel_died``.
    """

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    completion_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    turns: int = 0
    feedbacks: list[str] = field(default_factory=list)
    code_results: list[bool] = field(default_factory=list)
    stop_reason: str = ""
    stats: EpisodeStats = field(default_factory=EpisodeStats)
    duration: float = 0.0

    @property
    def finished(self) -> bool:
        return self.stop_reason in ("answer", "eos")


class _Running:
    """Bookkeeping of one episode while its wave runs."""

    def __init__(self, spec: EpisodeSpec, episode: KernelEpisode) -> None:
        self.result = EpisodeResult(prompt_ids=list(spec.prompt_ids))
        self.episode = episode
        self.turn_text = ""

    @property
    def context(self) -> list[int]:
        return self.result.prompt_ids + self.result.completion_ids

    def append(self, token_ids: Sequence[int], logprobs: Sequence[float], mask: int) -> None:
        self.result.completion_ids.extend(token_ids)
        self.result.logprobs.extend(logprobs)
        self.result.completion_mask.extend([mask] * len(token_ids))


class EpisodeRunner:
    """Runs episodes against an ``EnvironmentThread`` with an injected generation function."""

    def __init__(
        self,
        environment: EnvironmentThread,
        tokenizer: Any,
        generate: GenerateFn,
        config: RolloutConfig | None = None,
        *,
        on_wave: Callable[[int, int], None] | None = None,
    ) -> None:
        self.environment = environment
        self.tokenizer = tokenizer
        self.generate = generate
        self.config = config or RolloutConfig()
        self.eos_id: int = tokenizer.eos_token_id
        self.code_close_id = self._tag_id("</Code>")
        self.answer_close_id = self._tag_id("</Answer>")
        self.on_wave = on_wave

    def _tag_id(self, tag: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(tag)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {tag} token: add the DeepAnalyze tags to its vocabulary")
        return int(token_id)

    def prompt_ids(self, first_message: str) -> list[int]:
        """Tokens of the one user message, rendered as the served model sees it (the native
        rule: the model's template, ``add_generation_prompt=False``)."""
        return list(render_prompt(self.tokenizer, [{"role": "user", "content": first_message}], NATIVE, tokenize=True))

    def run(self, specs: Sequence[EpisodeSpec]) -> list[EpisodeResult]:
        """Roll out every spec; results in the order given."""
        results: list[EpisodeResult] = []
        size = self.environment.env.config.kernels
        for start in range(0, len(specs), size):
            wave = specs[start : start + size]
            if self.on_wave is not None:
                self.on_wave(start, len(specs))
            results.extend(self._run_wave(wave))
        return results

    # ------------------------------------------------------------------ internals

    def _run_wave(self, wave: Sequence[EpisodeSpec]) -> list[EpisodeResult]:
        started = time.monotonic()
        stack = contextlib.AsyncExitStack()

        async def open_all(env: KernelEnvironment) -> list[KernelEpisode]:
            return [await stack.enter_async_context(env.episode(s.files, name=s.name)) for s in wave]

        try:
            episodes = self.environment.run(open_all)
            running = [_Running(spec, episode) for spec, episode in zip(wave, episodes, strict=True)]
            active = list(running)
            while active:
                active = self._turn(active)
        finally:
            self.environment.run(lambda env: stack.aclose())
        for item in running:
            item.result.stats = item.episode.stats
            item.result.text = self.tokenizer.decode(item.result.completion_ids, skip_special_tokens=False)
            item.result.duration = time.monotonic() - started
        return [item.result for item in running]

    def _budget(self, item: _Running) -> int:
        left = self.config.max_completion_length - len(item.result.completion_ids)
        if self.config.max_turn_tokens is not None:
            left = min(left, self.config.max_turn_tokens)
        return left

    def _turn(self, active: list[_Running]) -> list[_Running]:
        """One model turn for every active episode, then their executions; the still active."""
        generations = self.generate([item.context for item in active], [self._budget(item) for item in active])
        to_execute: list[_Running] = []
        without_code: list[_Running] = []
        for item, generation in zip(active, generations, strict=True):
            tokens, logprobs = self._cut_at_stop(generation, self._budget(item))
            item.append(tokens, logprobs, 1)
            item.result.turns += 1
            item.turn_text = self.tokenizer.decode(tokens, skip_special_tokens=False)
            if self._answered(item.turn_text):
                item.result.stop_reason = "answer"
            elif tokens and tokens[-1] == self.code_close_id:
                to_execute.append(item)
            elif tokens and (tokens[-1] == self.eos_id or tokens[-1] == self.answer_close_id):
                if self.config.no_code_turn == "end":
                    item.result.stop_reason = "eos"
                else:
                    without_code.append(item)
            else:
                item.result.stop_reason = "max_length"
        steps = self._execute(to_execute)
        for item, step in zip(to_execute, steps, strict=True):
            if step.executed:
                self._observe(item, step)
        for item in without_code:
            if self.config.no_code_turn == "error":
                self._observe(item, StepResult(None, NO_CODE_FEEDBACK, "error"))
        still_active = []
        for item in to_execute + without_code:
            if item.result.stop_reason:
                continue
            if item.result.turns >= self.config.max_turns:
                item.result.stop_reason = "max_turns"
            elif len(item.result.completion_ids) >= self.config.max_completion_length:
                item.result.stop_reason = "max_length"
            else:
                still_active.append(item)
        return still_active

    def _answered(self, turn_text: str) -> bool:
        if self.config.answer_end == "closed_answer":
            return "<Answer>" in turn_text and "</Answer>" in turn_text
        return "<Answer>" in turn_text

    def _cut_at_stop(self, generation: Generation, budget: int) -> tuple[list[int], list[float]]:
        tokens = list(generation.token_ids[:budget])
        for index, token in enumerate(tokens):
            if token in (self.eos_id, self.code_close_id):
                tokens = tokens[: index + 1]
                break
            if token == self.answer_close_id and self.config.answer_end == "closed_answer":
                # The reference cuts the text after </Answer>; a generated EOS right after stays.
                keep = index + 2 if index + 1 < len(tokens) and tokens[index + 1] == self.eos_id else index + 1
                tokens = tokens[:keep]
                break
        return tokens, list(generation.logprobs[: len(tokens)])

    def _execute(self, items: list[_Running]) -> list[StepResult]:
        if not items:
            return []

        async def step_all(env: KernelEnvironment) -> list[StepResult]:
            return list(await asyncio.gather(*(item.episode.step(item.turn_text) for item in items)))

        return self.environment.run(step_all)

    def _observe(self, item: _Running, step: StepResult) -> None:
        assert step.feedback is not None
        item.result.feedbacks.append(step.feedback)
        if step.feedback == "" and self.config.empty_output == "drop":
            item.result.code_results.append(False)
            return
        item.result.code_results.append(step.status == "ok")
        observation = self.tokenizer.encode(observation_text(step.feedback), add_special_tokens=False)
        room = self.config.max_completion_length - len(item.result.completion_ids)
        if len(observation) > room:
            observation = observation[:room]
            item.result.stop_reason = "max_length"
        item.append(observation, [0.0] * len(observation), 0)
        if step.status == "dead":
            item.result.stop_reason = "kernel_died"
