"""The metrics log of a training stage: one JSON object per logging step.

Owns ``MetricsLog`` (a ``TrainerCallback`` appending a ``train_begin`` record with the
device and world size, then every ``on_log`` record, each stamped with the stage name and
step, to ``metrics.jsonl``, on the main process only), ``append_metrics`` (a curriculum's
run log gathers its stages' records) and ``read_metrics``. GRPO's rollout metrics (reward,
format rate, answer accuracy, turns, kernel time) reach it through the trainer's own logs.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

METRICS_FILE = "metrics.jsonl"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _plain(value.item())
    return value


class MetricsLog(TrainerCallback):
    """Appends each log record to ``path`` as a JSON line."""

    def __init__(self, path: str | Path, stage: str) -> None:
        self.path = Path(path)
        self.stage = stage

    def _write(self, state: Any, record: dict[str, Any]) -> None:
        if not state.is_world_process_zero:
            return
        stamped = {"stage": self.stage, "step": state.global_step, "time": time.time()}
        stamped.update({key: _plain(value) for key, value in record.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(stamped) + "\n")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Where the stage runs: the device and how many processes share it."""
        self._write(state, {"event": "train_begin", "device": str(args.device), "world_size": args.world_size})

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs:
            self._write(state, logs)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_metrics(stage_file: str | Path, run_file: str | Path) -> None:
    """Append a stage's records to the run's log, which holds every stage in order."""
    stage_file, run_file = Path(stage_file), Path(run_file)
    if stage_file.exists():
        with run_file.open("a", encoding="utf-8") as handle:
            handle.write(stage_file.read_text(encoding="utf-8"))
