"""The DeepAnalyze curriculum as one run: synthesis, then SFT stages, then GRPO.

Owns ``CurriculumConfig`` (a base model, an optional synthesis step and an ordered list
of stages, each an SFT or GRPO stage config with its ``kind``) and ``run_curriculum``:
every stage starts from the model the previous one saved (``{stage}/final``), writes into
``{output_dir}/{stage name}``, and appends to the run's ``metrics.jsonl``. The whole file
is validated before anything starts. The reference curriculum is (1) single-ability SFT,
(2a) agentic cold-start SFT, (2b) GRPO.

Must not contain trainer logic (``sft.py``, ``grpo.py``, ``synth.py`` do).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .configuration import ConfigError, build, load_yaml, substitute
from .grpo import GRPOStageConfig, run_grpo
from .sft import SFTStageConfig, run_sft
from .synth import SynthConfig, run_synth

log = logging.getLogger(__name__)

STAGE_KINDS = {"sft": SFTStageConfig, "grpo": GRPOStageConfig}


@dataclass
class CurriculumConfig:
    """A curriculum file, validated."""

    output_dir: str
    """Every stage writes into ``{output_dir}/{stage name}``."""
    base_model: str = "tiny"
    """The model the first stage starts from (a folder, ``tiny``, or a hub id)."""
    synth: SynthConfig | None = None
    """Run a synthesis first (its ``output_dir`` defaults to ``{output_dir}/data``)."""
    stages: list[SFTStageConfig | GRPOStageConfig] = field(default_factory=list)


def parse_curriculum(raw: dict[str, Any], where: str) -> CurriculumConfig:
    unknown = set(raw) - {"output_dir", "base_model", "synth", "stages"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: output_dir, base_model, synth, stages)")
    if not raw.get("output_dir"):
        raise ConfigError(f"{where}: missing required key 'output_dir'")
    output_dir = str(raw["output_dir"])
    raw = substitute(raw, output_dir=output_dir)
    synth = None
    if raw.get("synth") is not None:
        synth_raw = {"output_dir": f"{output_dir}/data", **raw["synth"]}
        synth = build(SynthConfig, synth_raw, f"{where}: synth")
    stages: list[SFTStageConfig | GRPOStageConfig] = []
    previous_model = str(raw.get("base_model", "tiny"))
    names = set()
    for number, stage_raw in enumerate(raw.get("stages") or []):
        stage_where = f"{where}: stages[{number}]"
        if not isinstance(stage_raw, dict):
            raise ConfigError(f"{stage_where}: a stage must be a mapping")
        stage_raw = dict(stage_raw)
        kind = stage_raw.pop("kind", None)
        if kind not in STAGE_KINDS:
            raise ConfigError(f"{stage_where}: 'kind' must be one of {', '.join(STAGE_KINDS)}, got {kind!r}")
        name = str(stage_raw.setdefault("name", f"{number + 1}-{kind}"))
        if name in names:
            raise ConfigError(f"{stage_where}: two stages are named {name!r}")
        names.add(name)
        stage_raw.setdefault("model", previous_model)
        stage_raw.setdefault("output_dir", f"{output_dir}/{name}")
        stage = build(STAGE_KINDS[kind], stage_raw, stage_where)
        stages.append(stage)
        previous_model = str(Path(stage.output_dir) / "final")
    if not stages and synth is None:
        raise ConfigError(f"{where}: nothing to run (no synth, no stages)")
    return CurriculumConfig(output_dir, str(raw.get("base_model", "tiny")), synth, stages)


def load_curriculum(path: str | Path, *, output_dir: str | None = None) -> CurriculumConfig:
    raw = load_yaml(path)
    if output_dir is not None:
        raw["output_dir"] = output_dir
    return parse_curriculum(raw, str(path))


def run_curriculum(config: CurriculumConfig) -> Path | None:
    """Run the synthesis and every stage in order; returns the last stage's model folder."""
    from .metrics import METRICS_FILE, append_metrics

    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    if config.synth is not None:
        started = time.monotonic()
        report = run_synth(config.synth)
        elapsed = time.monotonic() - started
        log.info("synthesis: %d tasks, %d verified trajectories (%.1fs)", report.tasks, report.verified, elapsed)
    final: Path | None = None
    for stage in config.stages:
        started = time.monotonic()
        final = run_sft(stage) if isinstance(stage, SFTStageConfig) else run_grpo(stage)
        log.info("stage %s done in %.1fs: %s", stage.name, time.monotonic() - started, final)
        append_metrics(Path(stage.output_dir) / METRICS_FILE, output / METRICS_FILE)
    return final
