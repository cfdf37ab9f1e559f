"""Model backends beyond one server: managed vLLM (fake binary), in-process transformers
(a tiny random Qwen3 built locally), the tiny Gemma through the CLI, and spec parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from jupyter_deepanalyze.config import DeepAnalyze
from jupyter_deepanalyze.llm import GenerationParams, ModelUnavailableError
from jupyter_deepanalyze.llm.registry import ModelRegistry, open_model, parse_spec
from jupyter_deepanalyze.llm.vllm_local import ManagedVLLM

TESTS = Path(__file__).resolve().parent
JUPYTER = str(Path(sys.executable).parent / "jupyter")
ANSWER = "<Answer>\nDone.\n</Answer>"


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `vllm` executable first on PATH that serves the scripted model."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Run by this interpreter (it imports the package), whatever `python3` is on PATH.
    launcher = bin_dir / "vllm"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{TESTS / "fake_vllm.py"}" "$@"\n')
    launcher.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_VLLM_ARGV", str(tmp_path / "argv.json"))
    monkeypatch.setenv("FAKE_VLLM_TURNS", json.dumps([ANSWER]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
        return stat.read().split()[2] != "Z"


async def test_managed_vllm_listens_on_loopback_serves_and_stops(fake_vllm: Path) -> None:
    model = await open_model(DeepAnalyze(), "vllm:/models/DeepAnalyze-8B")
    server = model.server  # type: ignore[attr-defined]
    pid = server._process.pid
    try:
        text = "".join([c async for c in model.stream([{"role": "user", "content": "Q"}], GenerationParams())])
        assert text == ANSWER
        argv = json.loads((fake_vllm / "argv.json").read_text())
        assert argv[:2] == ["serve", "/models/DeepAnalyze-8B"]
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert argv[argv.index("--served-model-name") + 1] == "DeepAnalyze-8B"
        assert model.base_url == f"http://127.0.0.1:{argv[argv.index('--port') + 1]}/v1"
        assert model.dialect.name == "native" and model.spec == "vllm:/models/DeepAnalyze-8B"
        assert "vllm serve /models/DeepAnalyze-8B (fake)" in server.log_path.read_text()
    finally:
        await model.aclose()
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


async def test_a_registry_shares_one_vllm_between_runs(fake_vllm: Path) -> None:
    registry = ModelRegistry(DeepAnalyze())
    try:
        first = await registry.get("vllm:/models/DeepAnalyze-8B")
        second = await registry.get("vllm:/models/DeepAnalyze-8B")
        assert first is second
    finally:
        await registry.aclose()


async def test_missing_vllm_says_how_to_install_it(tmp_path: Path) -> None:
    server = ManagedVLLM("/m/x", executable=str(tmp_path / "no-vllm"))
    with pytest.raises(ModelUnavailableError, match=r"vLLM is not installed .*jupyter-deepanalyze\[vllm\]"):
        await server.start()


@pytest.mark.parametrize(
    ("mode", "meaning"),
    [("oom", "not have enough memory"), ("nogpu", "no usable CUDA GPU")],
)
async def test_vllm_failures_are_explained_with_the_log(fake_vllm: Path, monkeypatch, mode: str, meaning: str) -> None:
    monkeypatch.setenv("FAKE_VLLM_MODE", mode)
    server = ManagedVLLM("/m/DeepAnalyze-8B")
    with pytest.raises(ModelUnavailableError) as caught:
        await server.start()
    message = str(caught.value)
    assert message.startswith("vLLM exited with status 1: ") and meaning in message
    assert str(server.log_path) in message and "\n" not in message


async def test_a_vllm_that_never_gets_ready_is_stopped(fake_vllm: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_MODE", "hang")
    server = ManagedVLLM("/m/DeepAnalyze-8B", startup_timeout=1.5)
    with pytest.raises(ModelUnavailableError, match="did not become ready within 1.5 s"):
        await server.start()
    assert server._process is None


def test_the_cli_runs_a_report_on_a_managed_vllm(fake_vllm: Path) -> None:
    out = fake_vllm / "r.ipynb"
    done = subprocess.run(
        [JUPYTER, "deepanalyze", "report", "-q", "Q", "-o", str(out), "--model", "vllm:/m/DeepAnalyze-8B"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert nbformat.read(out, as_version=4).cells[-1].source == "Done."


def test_specs_name_every_backend() -> None:
    assert (parse_spec("vllm:RUC-DataLab/DeepAnalyze-8B").kind, parse_spec("vllm:x").target) == ("vllm", "x")
    assert parse_spec("transformers:/m/model.gguf").target == "/m/model.gguf"
    assert parse_spec("tiny").kind == "tiny"
    assert str(parse_spec("transformers:/m")) == "transformers:/m"


# ------------------------------------------------------------------ transformers


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen"))


async def _generate(model, messages, temperature: float = 0.0, **params) -> list[str]:
    import torch

    torch.manual_seed(0)  # sampling is then the same on every call
    return [c async for c in model.stream(messages, GenerationParams(temperature=temperature, **params))]


@pytest.mark.parametrize("device", DEVICES)
async def test_transformers_streams_and_stops_on_the_stop_string(tiny_qwen: Path, device: str) -> None:
    from jupyter_deepanalyze.llm.transformers_local import TransformersModel

    model = TransformersModel(str(tiny_qwen), device=device)
    messages = [{"role": "user", "content": "# Instruction\nCount the rows."}]
    free = "".join(await _generate(model, messages, 1.0, max_tokens=32, stop=()))
    start = next(
        i for i in range(len(free) // 3, len(free) - 3) if free[i : i + 3].isascii() and free[i : i + 3].strip()
    )
    stop = free[start : start + 3]
    chunks = await _generate(model, messages, 1.0, max_tokens=32, stop=(stop,))
    stopped = "".join(chunks)
    assert len(chunks) > 1  # streamed, not one block
    assert stop in stopped and free.startswith(stopped) and len(stopped) < len(free)


async def test_transformers_stops_at_eos_and_drops_its_text(tiny_qwen: Path, tmp_path: Path) -> None:
    import shutil

    from jupyter_deepanalyze.llm.transformers_local import TransformersModel

    messages = [{"role": "user", "content": "# Instruction\nHi"}]
    plain = TransformersModel(str(tiny_qwen), device="cpu")
    await plain.ready()
    tokenizer = plain._loaded.tokenizer
    import torch

    prompt = tokenizer(plain.render(messages), return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(0)
    generated = plain._loaded.model.generate(**prompt, max_new_tokens=16, do_sample=True, temperature=1.0)
    ids = generated[0, prompt["input_ids"].shape[1] :].tolist()
    # A copy of the model whose EOS is the 6th token it generates for this prompt and seed.
    eos = ids[5]
    copy = tmp_path / "eos-model"
    shutil.copytree(tiny_qwen, copy)
    config = json.loads((copy / "generation_config.json").read_text())
    config["eos_token_id"] = eos
    (copy / "generation_config.json").write_text(json.dumps(config))
    model = TransformersModel(str(copy), device="cpu")
    text = "".join(await _generate(model, messages, 1.0, max_tokens=16, stop=()))
    assert text == tokenizer.decode(ids[: ids.index(eos)], skip_special_tokens=False)


async def test_transformers_renders_the_execute_role_inside_the_assistant_turn(tiny_qwen: Path) -> None:
    from jupyter_deepanalyze.llm.transformers_local import TransformersModel

    model = TransformersModel(str(tiny_qwen), device="cpu", dialect="native")
    await model.ready()
    messages = [
        {"role": "user", "content": "# Instruction\nQ"},
        {"role": "assistant", "content": "<Code>\nprint(1)\n</Code>"},
        {"role": "execute", "content": "1\n"},
    ]
    assert model.render(messages) == (
        "<｜begin▁of▁sentence｜><｜User｜># Instruction\nQ<｜Assistant｜>"
        "<Code>\nprint(1)\n</Code>\n<Execute>\n1\n\n</Execute>\n"
    )
    assert model.render(messages[:1]).endswith("<｜Assistant｜>")
    # The generic dialect keeps its own rule: a final assistant message is continued.
    generic = TransformersModel(str(tiny_qwen), device="cpu")
    await generic.ready()
    assert generic.dialect.name == "generic"  # the tiny Qwen's name is not DeepAnalyze's
    assert generic.render(messages[:2]).endswith("</Code>")


# Conversations the agent sends: the first request, after an execution, after an
# Analyze-only turn, after a follow-up question.
CONVERSATIONS = [
    [{"role": "user", "content": "# Instruction\nQ"}],
    [
        {"role": "user", "content": "# Instruction\nQ"},
        {"role": "assistant", "content": "<Analyze>\nLook.\n</Analyze>\n<Code>\nprint(1)\n</Code>"},
        {"role": "execute", "content": "1\n"},
    ],
    [
        {"role": "user", "content": "# Instruction\nQ"},
        {"role": "assistant", "content": "<Analyze>\nThink first.\n</Analyze>"},
    ],
    [
        {"role": "user", "content": "# Instruction\nQ"},
        {"role": "assistant", "content": "<Answer>\nDone.\n</Answer>"},
        {"role": "user", "content": "# Instruction\nAnd then?"},
    ],
]


async def test_in_process_prompts_are_what_the_chat_completions_path_asks_a_server_to_render(
    tiny_qwen: Path,
) -> None:
    from transformers import AutoTokenizer

    from jupyter_deepanalyze.llm.chat_template import render_prompt
    from jupyter_deepanalyze.llm.openai_compat import OpenAICompatModel
    from jupyter_deepanalyze.llm.transformers_local import TransformersModel
    from jupyter_deepanalyze.protocol import NATIVE

    from .scripted_llm import ScriptedLLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen)  # DeepSeek-style, knows `execute`
    in_process = TransformersModel(str(tiny_qwen), device="cpu", dialect="native")
    await in_process.ready()
    with ScriptedLLM([ANSWER] * len(CONVERSATIONS)) as llm:
        client = OpenAICompatModel(llm.url, model_name="DeepAnalyze-8B")
        try:
            for messages in CONVERSATIONS:
                _ = [c async for c in client.stream(messages, GenerationParams())]
        finally:
            await client.aclose()
        bodies = list(llm.requests)
    for messages, body in zip(CONVERSATIONS, bodies, strict=True):
        # What vLLM's chat-completions endpoint renders from the request it received.
        served = tokenizer.apply_chat_template(
            body["messages"], tokenize=False, add_generation_prompt=body["add_generation_prompt"]
        )
        assert body["add_generation_prompt"] is False
        assert in_process.render(messages) == served
        assert render_prompt(tokenizer, messages, NATIVE) == served
        assert render_prompt(tokenizer, messages, NATIVE, tokenize=True) == tokenizer.encode(
            served, add_special_tokens=False
        )


async def test_an_agent_run_on_the_transformers_backend_writes_the_models_text(
    tiny_qwen: Path, tmp_path: Path
) -> None:
    from jupyter_deepanalyze.agent import Agent, Task
    from jupyter_deepanalyze.execution.kernel import KernelExecutor
    from jupyter_deepanalyze.llm.transformers_local import TransformersModel
    from jupyter_deepanalyze.notebook import events_to_notebook

    model = TransformersModel(str(tiny_qwen), device="cpu", dialect="native")
    executor = await KernelExecutor.start(cwd=tmp_path)
    try:
        import torch

        torch.manual_seed(0)
        agent = Agent(model, executor, max_rounds=1, max_tokens=16, temperature=1.0)
        events = [e async for e in agent.run(Task("Q"))]
    finally:
        await executor.shutdown()
    streamed = "".join(e.text for e in events if e.type == "delta")
    assert streamed.strip() and events[-1].status in ("max_rounds", "completed", "failed")
    notebook = events_to_notebook(events)
    roles = [c.metadata["deepanalyze"]["role"] for c in notebook.cells]
    assert roles[0] == "title" and len(roles) >= 3


async def _second_round_with_and_without_the_cache(model, fresh, params: dict) -> tuple[str, str, int]:
    """Round 2 continues round 1's conversation: returns its text from the cropped cache,
    its text from a model that encodes the whole prompt again, and the tokens reused."""
    columns = ", ".join(f"c{i}" for i in range(200))
    first = [{"role": "user", "content": "# Instruction\nDescribe the columns: " + columns}]
    turn = "".join(await _generate(model, first, **params))
    second = [*first, {"role": "assistant", "content": turn}, {"role": "execute", "content": "rows: 3\n"}]
    with_cache = "".join(await _generate(model, second, **params))
    reused = model._loaded.reused_tokens
    without_cache = "".join(await _generate(fresh, second, **params))
    return with_cache, without_cache, reused


async def test_prefix_reuse_generates_the_same_tokens_as_a_fresh_prompt(tiny_qwen: Path) -> None:
    from jupyter_deepanalyze.llm.transformers_local import TransformersModel

    model = TransformersModel(str(tiny_qwen), device="cpu")
    fresh = TransformersModel(str(tiny_qwen), device="cpu", reuse_prefix=False)
    # Seeded sampling: the random tiny Qwen's greedy text is all newlines, samples are not.
    with_cache, without_cache, reused = await _second_round_with_and_without_the_cache(
        model, fresh, dict(temperature=1.0, max_tokens=24, stop=())
    )
    assert reused > 400  # the whole first round was not encoded again
    assert with_cache == without_cache and with_cache.strip()


@pytest.mark.slow
async def test_prefix_reuse_is_exact_for_gemma_past_its_sliding_window() -> None:
    """Gemma 3 mixes sliding-window and global attention layers (window 512 tokens)."""
    from jupyter_deepanalyze.llm.tiny import tiny_gguf
    from jupyter_deepanalyze.llm.transformers_local import TransformersModel

    model = TransformersModel(str(tiny_gguf()), device="cpu")
    fresh = TransformersModel(str(tiny_gguf()), device="cpu", reuse_prefix=False)
    with_cache, without_cache, reused = await _second_round_with_and_without_the_cache(
        model, fresh, dict(temperature=0.0, max_tokens=32, stop=())
    )
    assert reused > 512
    assert with_cache == without_cache and with_cache.strip()


def _cells_by_role(notebook: nbformat.NotebookNode) -> list[tuple[str, nbformat.NotebookNode]]:
    return [(c.metadata["deepanalyze"]["role"], c) for c in notebook.cells]


DEMO_QUESTIONS = (
    None,  # the demo's own question
    "What is the total revenue of each product?",
    "How do units sold change over the days of the week?",
)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_tiny_model_demo_runs_model_written_code_on_the_data_then_reports(tmp_path: Path) -> None:
    """The README's first command, over several questions: every notebook holds code the
    model wrote that ran in the kernel on sales.csv with output, then a report cell."""
    for index, question in enumerate(DEMO_QUESTIONS):
        out = tmp_path / f"demo{index}.ipynb"
        command = [JUPYTER, "deepanalyze", "report", "--demo", "-o", str(out), "--model", "tiny", "--max-rounds", "4"]
        asked = command + (["-q", question] if question else [])
        done = subprocess.run(asked, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        assert "model gemma-3-270m (tiny)" in done.stderr
        assert "Loading weights" not in done.stderr and "llama_" not in done.stderr  # progress lines only
        assert "Warning" not in done.stderr, done.stderr  # a library's deprecation notice is not progress
        roles = _cells_by_role(nbformat.read(out, as_version=4))
        ran = [
            i for i, (role, cell) in enumerate(roles)
            if role == "code" and cell.execution_count and cell.outputs
            and all(o.output_type != "error" for o in cell.outputs)
        ]
        assert ran, roles
        code = roles[ran[0]][1].source
        assert "sales.csv" in code  # the model opened the demo data by name
        assert any(role == "report" and cell.source.strip() for role, cell in roles[ran[0] + 1 :]), roles
