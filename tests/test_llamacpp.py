"""The ``llamacpp:PATH.gguf`` backend on the tiny Gemma GGUF: streaming, stop strings,
end of turn, cancellation, the context window, guided turns and prefix reuse.

Skipped, with the reason, when llama-cpp-python (the ``llamacpp`` extra) is missing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llamacpp]')")

from jupyter_deepanalyze.config import DeepAnalyze  # noqa: E402
from jupyter_deepanalyze.llm import ContextWindowFullError, GenerationParams  # noqa: E402
from jupyter_deepanalyze.llm.description import describe  # noqa: E402
from jupyter_deepanalyze.llm.llamacpp_local import LlamaCppModel  # noqa: E402
from jupyter_deepanalyze.llm.registry import open_model, parse_spec  # noqa: E402
from jupyter_deepanalyze.llm.tiny import TINY_DIALECT, tiny_gguf, tiny_model  # noqa: E402
from jupyter_deepanalyze.protocol import DataFile, parse_segments  # noqa: E402

QUESTION = [{"role": "user", "content": "# Instruction\nWrite a short poem about tables."}]


@pytest.fixture(scope="module")
def gguf() -> Path:
    return tiny_gguf()


async def _text(model, messages, **params) -> list[str]:
    return [c async for c in model.stream(messages, GenerationParams(**{"temperature": 0.0, **params}))]


async def test_llamacpp_spec_opens_the_gguf_in_process(gguf: Path) -> None:
    assert str(parse_spec(f"llamacpp:{gguf}")) == f"llamacpp:{gguf}"
    model = await open_model(DeepAnalyze(), f"llamacpp:{gguf}")
    assert isinstance(model, LlamaCppModel) and model.name == gguf.stem and model.dialect.name == "generic"
    described = await describe(f"llamacpp:{gguf}", DeepAnalyze())
    assert (described.name, described.available, described.error) == (gguf.stem, True, None)
    missing = await describe("llamacpp:/nowhere/model.gguf", DeepAnalyze())
    assert (missing.available, missing.error) == (False, "no GGUF file at /nowhere/model.gguf")


async def test_llamacpp_streams_and_stops_on_the_stop_string(gguf: Path) -> None:
    model = LlamaCppModel(str(gguf))
    free = "".join(await _text(model, QUESTION, max_tokens=40, stop=()))
    words = free.split()
    assert len(words) > 4
    stop = words[3]
    chunks = await _text(model, QUESTION, max_tokens=40, stop=(stop,))
    stopped = "".join(chunks)
    assert len(chunks) > 1 and stop in stopped and free.startswith(stopped) and len(stopped) < len(free)


async def test_llamacpp_stops_at_the_end_of_turn_without_showing_it(gguf: Path) -> None:
    model = LlamaCppModel(str(gguf))
    text = "".join(await _text(model, [{"role": "user", "content": "Say hi."}], max_tokens=200, stop=()))
    assert text.strip() and "<end_of_turn>" not in text and "<eos>" not in text


async def test_llamacpp_renders_the_execute_role_inside_the_assistant_turn(gguf: Path) -> None:
    model = LlamaCppModel(str(gguf))
    await model.ready()
    messages = [
        {"role": "user", "content": "# Instruction\nQ"},
        {"role": "assistant", "content": "<Code>\nprint(1)\n</Code>"},
        {"role": "execute", "content": "1\n"},
    ]
    assert model.render(messages) == (
        "<bos><start_of_turn>user\n# Instruction\nQ<end_of_turn>\n"
        "<start_of_turn>model\n<Code>\nprint(1)\n</Code><end_of_turn>\n"
        "<start_of_turn>model\n<Execute>\n1\n\n</Execute>\n"
    )
    assert model.render(messages[:1]).endswith("<start_of_turn>model\n")


async def test_closing_the_stream_stops_generation_and_frees_the_model(gguf: Path) -> None:
    model = LlamaCppModel(str(gguf))
    stream = model.stream(QUESTION, GenerationParams(temperature=0.0, max_tokens=2000, stop=()))
    first = await stream.__anext__()
    await asyncio.wait_for(stream.aclose(), timeout=30)  # the worker stops at its next token
    assert first
    assert not model._loaded.lock.locked()
    again = "".join(await _text(model, QUESTION, max_tokens=5, stop=()))
    assert again


async def test_a_conversation_longer_than_the_context_window_is_refused(gguf: Path) -> None:
    model = LlamaCppModel(str(gguf), n_ctx=256)
    with pytest.raises(ContextWindowFullError, match="context window \\(256 tokens\\) is full"):
        await _text(model, [{"role": "user", "content": "word " * 400}], max_tokens=5)


async def test_guided_turns_follow_the_tag_skeleton_with_the_models_own_words(gguf: Path) -> None:
    model = tiny_model(backend="llamacpp")
    task = TINY_DIALECT.first_message("Which region sells most?", [DataFile("sales.csv", 4096, ("region", "units"))])
    messages = TINY_DIALECT.initial_messages(task)
    first = "".join(await _text(model, messages, max_tokens=256))
    assert [s.tag for s in parse_segments(first)] == ["Analyze", "Code"]
    assert first.endswith("</Code>") and "sales.csv" in first
    later = [*messages, {"role": "assistant", "content": first}, {"role": "execute", "content": "region\nEast  12\n"}]
    second = "".join(await _text(model, later, max_tokens=256))
    tags = [s.tag for s in parse_segments(second)]
    assert tags in (["Understand", "Code"], ["Understand", "Answer"])


async def test_prefix_reuse_generates_the_same_tokens_as_a_fresh_prompt(gguf: Path) -> None:
    """Round 2 extends round 1's prompt: from llama.cpp's kept tokens it must produce the
    greedy tokens of a model that evaluates the whole prompt again.

    The extension is fixed text: llama.cpp's one-token decode (how a turn is generated)
    and its batched decode (how a prompt is evaluated) differ slightly in their numbers,
    so a generated turn's kept keys and values are not bit-identical to re-evaluated ones.
    """
    model = LlamaCppModel(str(gguf))
    columns = ", ".join(f"c{i}" for i in range(200))
    first = [{"role": "user", "content": "# Instruction\nDescribe the columns: " + columns}]
    await _text(model, first, max_tokens=1, stop=())  # evaluates round 1's prompt
    second = [
        *first,
        {"role": "assistant", "content": "<Code>\nprint(len(df))\n</Code>"},
        {"role": "execute", "content": "rows: 3\n"},
    ]
    with_cache = "".join(await _text(model, second, max_tokens=24, stop=()))
    assert model._loaded.reused_tokens > 512  # round 1's prompt was not evaluated again
    model._loaded.llama.reset()  # forget every evaluated token
    without_cache = "".join(await _text(model, second, max_tokens=24, stop=()))
    assert model._loaded.reused_tokens == 0
    assert with_cache == without_cache and with_cache.strip()


@pytest.mark.slow
async def test_bench_local_models_measures_speed_and_round_8_latency_with_reuse() -> None:
    from jupyter_deepanalyze.eval.bench_local import ROUNDS, measure_backend, render_local_models

    speed = await measure_backend("llamacpp", repeat=1)
    assert speed.tokens_per_second > 0 and speed.round8_prompt_tokens > 500
    # Without reuse round 8 evaluates its whole prompt; with it, only the last round's text.
    assert speed.ttft_round8_ms < speed.ttft_round8_fresh_ms
    table = render_local_models([speed])
    assert f"round {ROUNDS}" in table and "| llamacpp |" in table
