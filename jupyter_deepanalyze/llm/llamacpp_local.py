"""In-process llama.cpp backend (``llamacpp:PATH.gguf``), through llama-cpp-python.

Owns loading a GGUF file once per process, rendering the conversation with the GGUF's
own chat template (the transformers backend's fallbacks when it has none, the same
continuation rules), and streaming generation in a worker thread that stops on a stop
string, an end-of-turn token, the context window or cancellation. llama.cpp keeps the
evaluated tokens of the last call and re-evaluates only what follows the common prefix,
so a round costs its new tokens. A guided model (``turn_guide``) is held to the turn's
tag skeleton through llama.cpp's logits hook.

Needs the ``[llamacpp]`` extra (``llama-cpp-python``; it compiles llama.cpp from source
with cmake and a C compiler when no wheel fits the machine).

Must not contain agent logic.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import Dialect, dialect_for
from . import ContextWindowFullError, GenerationParams, Message, ModelUnavailableError
from .generation_thread import stream_generation
from .turn_guide import TurnGuide, turn_grammar

INSTALL_HINT = "pip install 'jupyter-deepanalyze[llamacpp]'"
DEFAULT_CONTEXT = 8192
"""Context window allocated when the GGUF's own is larger (keys and values take memory)."""


@dataclass
class LoadedGGUF:
    llama: Any
    chat_template: str
    bos_token: str
    eos_token: str
    end_ids: frozenset[int]
    lock: threading.Lock = field(default_factory=threading.Lock)
    guide_tokenizer: Any = None
    reused_tokens: int = 0  # prompt tokens the last generation kept from the previous one

    def common_prefix(self, tokens: Sequence[int]) -> int:
        """Tokens llama.cpp keeps evaluated for this prompt (its own prefix-match rule)."""
        evaluated = self.llama._input_ids[: self.llama.n_tokens].tolist()
        same = 0
        for a, b in zip(evaluated, tokens, strict=False):
            if a != b:
                break
            same += 1
        return same - 1 if same == len(tokens) else same


_loaded: dict[tuple[str, int], LoadedGGUF] = {}
_load_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Free llama.cpp's memory while the interpreter can still run its finalizers."""
    for loaded in _loaded.values():
        loaded.llama.close()
    _loaded.clear()


def _silence_llama_logs() -> None:
    """llama.cpp prints its loading log to stderr even when not verbose; front doors print their own."""
    import llama_cpp

    global _log_callback
    if _log_callback is None:
        _log_callback = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_log_callback, None)


_log_callback: Any = None  # kept referenced: llama.cpp calls it from C


def load(path: str, n_ctx: int | None = None) -> LoadedGGUF:
    """Load (once per process) a GGUF file."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelUnavailableError(f"The llama.cpp backend needs {INSTALL_HINT} ({exc}).") from exc
    from .transformers_local import GEMMA_TEMPLATE, PLAIN_TEMPLATE

    source = Path(path).expanduser()
    if not source.is_file():
        raise ModelUnavailableError(f"No GGUF file at {source}.")
    key = (str(source.resolve()), n_ctx or 0)
    with _load_lock:
        if key in _loaded:
            return _loaded[key]
        _silence_llama_logs()
        try:
            probe = llama_cpp.Llama(str(source), vocab_only=True, verbose=False)
            metadata = dict(probe.metadata)
            del probe
            architecture = metadata.get("general.architecture", "")
            trained = int(metadata.get(f"{architecture}.context_length") or DEFAULT_CONTEXT)
            llama = llama_cpp.Llama(
                str(source), n_ctx=n_ctx or min(trained, DEFAULT_CONTEXT), verbose=False
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailableError(f"Could not load {source.name} with llama.cpp: {exc}") from exc
        template = metadata.get("tokenizer.chat_template") or (
            GEMMA_TEMPLATE if architecture.startswith("gemma") else PLAIN_TEMPLATE
        )

        def piece(token: int) -> str:
            return llama.detokenize([token], special=True).decode("utf-8", errors="replace")

        end_ids = {llama.token_eos()}
        for marker in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
            ids = llama.tokenize(marker.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                end_ids.add(ids[0])
        loaded = LoadedGGUF(llama, template, piece(llama.token_bos()), piece(llama.token_eos()), frozenset(end_ids))
        _loaded[key] = loaded
        return loaded


def render_template(
    template: str, messages: Sequence[Message], bos_token: str, eos_token: str, dialect: Dialect
) -> str:
    """The prompt text, by the dialect's rule as every in-process path renders it
    (``Dialect.template_options``, what ``chat_template.render_prompt`` applies)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    last = messages[-1] if messages else {"role": "user", "content": ""}
    options = dialect.template_options(last["role"])
    text = environment.from_string(template).render(
        messages=[dict(m) for m in messages],
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=options.get("add_generation_prompt", False),
    )
    if options.get("continue_final_message") and last["content"]:
        # Continue the final message: cut whatever the template closes it with.
        text = text[: text.rindex(last["content"].rstrip()) + len(last["content"].rstrip())]
    return text


class LlamaCppModel:
    """A GGUF model run in this process by llama.cpp."""

    def __init__(
        self,
        path: str,
        *,
        name: str | None = None,
        spec: str | None = None,
        dialect: str | Dialect = "auto",
        max_new_tokens: int | None = None,
        chat_template: str | None = None,
        guided: bool = False,
        greedy: bool = False,
        n_ctx: int | None = None,
    ) -> None:
        self.path = path
        self.spec = spec or f"llamacpp:{path}"
        self.name = name or Path(path).name.removesuffix(".gguf")
        self.dialect = dialect if isinstance(dialect, Dialect) else dialect_for(self.name, dialect)
        self.max_new_tokens = max_new_tokens
        self.chat_template = chat_template
        self.guided = guided
        self.greedy = greedy
        self.n_ctx = n_ctx
        self._loaded: LoadedGGUF | None = None

    async def ready(self) -> None:
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(load, self.path, self.n_ctx)

    async def aclose(self) -> None:
        """The loaded model stays for the next run in this process."""

    @property
    def context_length(self) -> int:
        assert self._loaded is not None
        llama = self._loaded.llama
        return min(int(llama.n_ctx()), len(llama.input_ids))  # llama.cpp may round n_ctx up

    def render(self, messages: Sequence[Message]) -> str:
        assert self._loaded is not None
        loaded = self._loaded
        template = self.chat_template or loaded.chat_template
        return render_template(template, messages, loaded.bos_token, loaded.eos_token, self.dialect)

    def _guide(self, grammar: str) -> TurnGuide:
        loaded = self._loaded
        assert loaded is not None
        if loaded.guide_tokenizer is None:
            import warnings

            import llguidance.llamacpp

            with warnings.catch_warnings():  # it reads each token's attributes by a deprecated name
                warnings.simplefilter("ignore", DeprecationWarning)
                loaded.guide_tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(loaded.llama._model.vocab)
        return TurnGuide(loaded.guide_tokenizer, grammar)

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        await self.ready()
        loaded = self._loaded
        assert loaded is not None
        tokens = loaded.llama.tokenize(self.render(messages).encode(), add_bos=False, special=True)
        room = self.context_length - len(tokens)
        if room <= 0:
            raise ContextWindowFullError(limit=self.context_length, needed=len(tokens))
        wanted = min(params.max_tokens, self.max_new_tokens or params.max_tokens, room)
        guide = await asyncio.to_thread(self._guide, turn_grammar(messages)) if self.guided else None
        generate = functools.partial(self._generate, loaded, tokens, wanted, params, guide)
        # Closing this stream closes the worker's at once (the model is free when it returns).
        async with contextlib.aclosing(stream_generation(generate, params.stop, name="deepanalyze-llamacpp")) as pieces:
            async for piece in pieces:
                yield piece

    def _generate(
        self,
        loaded: LoadedGGUF,
        tokens: list[int],
        max_new_tokens: int,
        params: GenerationParams,
        guide: TurnGuide | None,
        queue: asyncio.Queue[str | BaseException | None],
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event,
    ) -> None:
        def send(item: str | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        processors = None
        if guide is not None:
            # The loop below feeds the guide each token before llama.cpp samples the next.
            processors = [lambda input_ids, scores: guide.mask_logits(scores)]
        temperature = 0.0 if self.greedy else params.temperature
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        generated = 0
        try:
            with loaded.lock:
                loaded.reused_tokens = max(loaded.common_prefix(tokens), 0)
                for token in loaded.llama.generate(
                    tokens, temp=temperature, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                    logits_processor=processors,
                ):
                    if token in loaded.end_ids or stop.is_set():
                        break
                    text = decoder.decode(loaded.llama.detokenize([token], special=False))
                    if text:
                        send(text)
                    generated += 1
                    if generated >= max_new_tokens:
                        break
                    if guide is not None:
                        guide.consume([token])
                        if guide.finished:
                            break
                tail = decoder.decode(b"", final=True)
                if tail:
                    send(tail)
        except BaseException as exc:  # surfaced to the caller as a ModelError
            send(exc)
        finally:
            send(None)
