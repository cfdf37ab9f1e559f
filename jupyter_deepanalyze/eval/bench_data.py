"""The bench's synthetic data: a deterministic table and a table-QA set of questions on it.

Owns the table every bench measurement reads (``bench.csv``: 10k rows, 50 groups) and the
questions of the eval-throughput measurements, with their answers computed here.

Must not be imported by the agent or any front door other than the CLI's ``bench``.
"""

from __future__ import annotations

import json
from pathlib import Path

ROWS = 10_000
GROUPS = 50
CSV_NAME = "bench.csv"


def write_bench_csv(folder: Path, rows: int = ROWS) -> Path:
    """A deterministic table of ``rows`` rows: ``id``, ``key`` (50 groups), ``value``, ``flag``."""
    path = folder / CSV_NAME
    lines = ["id,key,value,flag"]
    for i in range(rows):
        lines.append(f"{i},k{(i * 7) % GROUPS:02d},{((i * 7919) % 10007) / 100:.2f},{'yes' if i % 3 else 'no'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_table_qa_set(folder: Path, tasks: int) -> Path:
    """A table-QA set of ``tasks`` questions on the bench table, answers computed here."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    csv = write_bench_csv(folder)
    frame = pd.read_csv(csv)
    with (folder / "questions.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(tasks):
            key = f"k{(i * 11) % GROUPS:02d}"
            answer = round(frame.loc[frame["key"] == key, "value"].mean(), 4)
            record = {
                "id": f"q{i}",
                "question": f"What is the mean value for key {key}? Round it to 4 decimal places.",
                "files": [CSV_NAME],
                "answers": [str(answer)],
                "level": ("easy", "medium")[i % 2],
            }
            handle.write(json.dumps(record) + "\n")
    return folder
