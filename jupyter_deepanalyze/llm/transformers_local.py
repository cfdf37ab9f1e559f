"""In-process Hugging Face transformers backend (``transformers:ID_OR_PATH``, ``tiny``).

Owns loading a model directory or a local ``.gguf`` file (converted once and cached, as
GGUF de-quantisation takes tens of seconds), rendering the conversation with the
tokenizer's chat template (a plain fallback when the model has none), and streaming
generation in a worker thread that stops on ``</Code>``, EOS or cancellation. Each
round reuses the previous round's KV cache for the prompt's common prefix (a
``DynamicCache`` cropped to the shared token ids), so a round encodes only its new
tokens; a guided model (``turn_guide``) is held to the turn's tag skeleton.

One load per process: every run asking for the same model shares it (generation is
serialized per model). Needs the ``[transformers]`` extra (torch, transformers, gguf,
accelerate).

Must not contain agent logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import Dialect, dialect_for
from . import ContextWindowFullError, GenerationParams, Message, ModelUnavailableError
from .chat_template import render_prompt
from .generation_thread import stream_generation
from .turn_guide import TurnGuide, turn_grammar

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'jupyter-deepanalyze[transformers]'"

# Used when a model ships no chat template. Gemma's own turn markers for Gemma models
# (system text goes into the first user turn, as Gemma's template does); a neutral
# "Role:" layout otherwise. Both render DeepAnalyze's ``execute`` role the way its
# template does: inside the assistant's turn.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}"
    "{% elif m['role'] == 'execute' %}<start_of_turn>model\n<Execute>\n{{ m['content'] }}\n</Execute>\n"
    "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{% if loop.index0 <= 1 and m['role'] == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ m['content'] }}<end_of_turn>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
PLAIN_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'execute' %}<Execute>\n{{ m['content'] }}\n</Execute>\n"
    "{% else %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)


def cache_dir() -> Path:
    """Where converted models live (``$XDG_CACHE_HOME/jupyter-deepanalyze``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "jupyter-deepanalyze"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    chat_template: str | None  # None: the tokenizer's own
    context_length: int
    end_ids: frozenset[int]  # end-of-turn tokens: generation stops there, never shown
    lock: threading.Lock
    cached_ids: list[int] = field(default_factory=list)  # what ``cache`` holds keys and values of
    cache: Any = None  # the last generation's DynamicCache (its prefix is reused)
    guide_tokenizer: Any = None  # llguidance's view of the vocabulary, built on first use
    reused_tokens: int = 0  # prompt tokens the last generation took from the cache

    def reusable_cache(self, ids: list[int]) -> tuple[Any, int]:
        """A cache holding the longest prefix of ``ids`` already computed, and its length.

        At least one token is left to encode: generation needs the last position's logits.
        """
        from transformers import DynamicCache

        if self.cache is None:
            return DynamicCache(), 0
        keep = 0
        for cached, new in zip(self.cached_ids, ids[:-1], strict=False):
            if cached != new:
                break
            keep += 1
        if keep == 0:
            return DynamicCache(), 0
        surplus = self.cache.get_seq_length() - keep
        if surplus > 0:
            self.cache.crop(-surplus)
        return self.cache, keep

    def keep_cache(self, cache: Any, sequence: list[int]) -> None:
        self.cache = cache
        self.cached_ids = sequence[: cache.get_seq_length()]

    @functools.cached_property
    def cache_keyword(self) -> str:
        """How ``generate`` takes a cache: ``cache`` since transformers renamed it (passing
        the old ``past_key_values`` there prints a FutureWarning into the user's progress)."""
        import inspect

        return "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"


_loaded: dict[tuple[str, str], LoadedModel] = {}
_load_lock = threading.Lock()


def _device(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def _converted_gguf(path: Path) -> Path:
    """A safetensors copy of a GGUF model, made once: later loads take seconds, not minutes."""
    stat = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "converted" / f"{path.stem}-{digest}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to a cached transformers model (once; this takes a minute)", path.name)
    with _quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    # GGUF weights are de-quantized on load; what is left of the quantizer only blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    return target


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No weight-loading progress bar: front doors print their own progress lines."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def load(source: str, device: str | None = None) -> LoadedModel:
    """Load (once per process) a model directory, hub id available offline, or ``.gguf`` file."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelUnavailableError(f"The transformers backend needs {INSTALL_HINT} ({exc}).") from exc
    resolved_device = _device(device)
    key = (source, resolved_device)
    with _load_lock:
        if key in _loaded:
            return _loaded[key]
        path = Path(source).expanduser()
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ModelUnavailableError(f"No GGUF file at {path}.")
            path = _converted_gguf(path)
        location = str(path) if path.exists() else source
        try:
            with _quiet_loading():
                tokenizer = AutoTokenizer.from_pretrained(location)
                dtype = torch.float32 if resolved_device == "cpu" else "auto"
                model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"Could not load the model {source!r}: {exc}") from exc
        model.to(resolved_device)
        model.eval()
        template = None
        if not tokenizer.chat_template:
            template = GEMMA_TEMPLATE if "gemma" in model.config.model_type else PLAIN_TEMPLATE
        eos = model.generation_config.eos_token_id
        end_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            end_ids.add(tokenizer.eos_token_id)
        if template == GEMMA_TEMPLATE:  # GGUF Gemmas often list only <eos> as EOS
            turn_end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
            if isinstance(turn_end, int) and turn_end != tokenizer.unk_token_id:
                end_ids.add(turn_end)
        context = getattr(model.config, "max_position_embeddings", None) or 4096
        loaded = LoadedModel(model, tokenizer, template, int(context), frozenset(end_ids), threading.Lock())
        _loaded[key] = loaded
        return loaded


class TransformersModel:
    """A causal LM run in this process."""

    def __init__(
        self,
        source: str,
        *,
        name: str | None = None,
        spec: str | None = None,
        dialect: str | Dialect = "auto",
        device: str | None = None,
        max_new_tokens: int | None = None,
        chat_template: str | None = None,
        guided: bool = False,
        greedy: bool = False,
        reuse_prefix: bool = True,
    ) -> None:
        self.source = source
        self.spec = spec or f"transformers:{source}"
        self.name = name or Path(source).name.removesuffix(".gguf") or source
        self.dialect = dialect if isinstance(dialect, Dialect) else dialect_for(self.name, dialect)
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.chat_template = chat_template  # overrides the tokenizer's (a completion layout)
        self.guided = guided  # hold each turn to the tag skeleton (turn_guide)
        self.greedy = greedy  # ignore the temperature: always the likeliest token
        self.reuse_prefix = reuse_prefix
        self._loaded: LoadedModel | None = None

    async def ready(self) -> None:
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(load, self.source, self.device)

    async def aclose(self) -> None:
        """The loaded weights stay for the next run in this process."""

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text, rendered by the dialect's rule (``chat_template.render_prompt``)."""
        assert self._loaded is not None
        return render_prompt(
            self._loaded.tokenizer,
            messages,
            self.dialect,
            chat_template=self.chat_template or self._loaded.chat_template,
        )

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        await self.ready()
        loaded = self._loaded
        assert loaded is not None
        prompt = self.render(messages)
        inputs = loaded.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        room = loaded.context_length - prompt_tokens
        if room <= 0:
            raise ContextWindowFullError(limit=loaded.context_length, needed=prompt_tokens)
        wanted = min(params.max_tokens, self.max_new_tokens or params.max_tokens)
        guide = await asyncio.to_thread(self._guide, turn_grammar(messages)) if self.guided else None
        generate = functools.partial(self._generate, loaded, inputs, min(wanted, room), params, guide)
        # Closing this stream closes the worker's at once (the model is free when it returns).
        async with contextlib.aclosing(stream_generation(generate, params.stop, name="deepanalyze-generate")) as pieces:
            async for piece in pieces:
                yield piece

    def _guide(self, grammar: str) -> TurnGuide:
        loaded = self._loaded
        assert loaded is not None
        if loaded.guide_tokenizer is None:
            import llguidance.hf

            loaded.guide_tokenizer = llguidance.hf.from_tokenizer(loaded.tokenizer)
        return TurnGuide(loaded.guide_tokenizer, grammar)

    def _generate(
        self,
        loaded: LoadedModel,
        inputs: Any,
        max_new_tokens: int,
        params: GenerationParams,
        guide: TurnGuide | None,
        queue: asyncio.Queue[str | BaseException | None],
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event,
    ) -> None:
        import torch
        from transformers import (
            LogitsProcessor,
            LogitsProcessorList,
            StoppingCriteria,
            StoppingCriteriaList,
            TextStreamer,
        )

        class QueueStreamer(TextStreamer):
            def put(self, value: Any) -> None:
                if value.dim() > 1 or value.numel() != 1 or int(value) not in loaded.end_ids:
                    super().put(value)  # end-of-turn tokens are control, not text

            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    loop.call_soon_threadsafe(queue.put_nowait, text)

        prompt_length = int(inputs["input_ids"].shape[1])

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = stop.is_set() or (guide is not None and guide.finished)
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        class Guided(LogitsProcessor):
            """Only tokens the turn's grammar allows (the guide follows what was generated)."""

            def __init__(self, guide: TurnGuide) -> None:
                self.guide = guide
                self.seen = prompt_length

            def __call__(self, input_ids: Any, scores: Any) -> Any:
                self.guide.consume(input_ids[0, self.seen :].tolist())
                self.seen = int(input_ids.shape[1])
                allowed = torch.from_numpy(self.guide.allowed(int(scores.shape[-1]))).to(scores.device)
                return scores.masked_fill(~allowed, float("-inf"))

        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": params.temperature}
            if params.temperature > 0 and not self.greedy
            else {"do_sample": False}
        )
        if guide is not None:
            sampling["logits_processor"] = LogitsProcessorList([Guided(guide)])
        try:
            with loaded.lock, torch.inference_mode():
                ids = inputs["input_ids"][0].tolist()
                cache, loaded.reused_tokens = loaded.reusable_cache(ids) if self.reuse_prefix else (None, 0)
                sequences = loaded.model.generate(
                    **{k: v.to(loaded.model.device) for k, v in inputs.items()},
                    max_new_tokens=max_new_tokens,
                    streamer=QueueStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=False),
                    stop_strings=list(params.stop) or None,
                    eos_token_id=sorted(loaded.end_ids) or None,
                    tokenizer=loaded.tokenizer,
                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                    pad_token_id=loaded.tokenizer.pad_token_id or loaded.tokenizer.eos_token_id,
                    **{loaded.cache_keyword: cache},
                    **sampling,
                )
                if cache is not None:
                    loaded.keep_cache(cache, sequences[0].tolist())
        except BaseException as exc:  # surfaced to the caller as a ModelError
            loaded.cache, loaded.cached_ids = None, []
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)
