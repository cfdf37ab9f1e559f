"""nbformat output lists: how outputs accumulate in a cell.

Owns the rules every sink and executor shares: consecutive stream outputs of the
same name merge into one, as Jupyter frontends show them; stream text an executor did
not keep is announced by one ``dropped_stream_note``.
"""

from __future__ import annotations

import copy
from typing import Any

Output = dict[str, Any]


def stream_text(output: Output) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else str(text)


def append_output(outputs: list[Output], output: Output) -> None:
    """Append ``output`` to a cell's ``outputs``, merging it into a preceding stream."""
    if (
        output.get("output_type") == "stream"
        and outputs
        and outputs[-1].get("output_type") == "stream"
        and outputs[-1].get("name") == output.get("name")
    ):
        outputs[-1]["text"] = stream_text(outputs[-1]) + stream_text(output)
        return
    outputs.append(copy.deepcopy(output))


def dropped_stream_note(count: int) -> Output:
    """The stderr line that ends an execution whose stream output was cut at its cap."""
    return {
        "output_type": "stream",
        "name": "stderr",
        "text": f"\n[{count} more characters of output were not kept]\n",
    }
