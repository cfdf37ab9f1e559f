"""``python -m training {sft,grpo,synth,curriculum} --config FILE``: the training CLI.

Owns argument parsing and turning a bad config or data file into one line on stderr
(exit status 2). Launch multi-process runs with ``accelerate launch -m training …``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .configuration import ConfigError, load_config
from .data import DataError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="DeepAnalyze training: synthesis, SFT, GRPO with live-kernel rollouts, or the whole curriculum.",
    )
    parser.add_argument("command", choices=["sft", "grpo", "synth", "curriculum"], help="what to run")
    parser.add_argument("--config", required=True, help="YAML config file (see training/configs/)")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    return parser


def run(command: str, config_path: str, output_dir: str | None = None) -> None:
    if command == "sft":
        from .sft import SFTStageConfig, run_sft

        print(run_sft(load_config(SFTStageConfig, config_path, output_dir=output_dir)))
    elif command == "grpo":
        from .grpo import GRPOStageConfig, run_grpo

        print(run_grpo(load_config(GRPOStageConfig, config_path, output_dir=output_dir)))
    elif command == "synth":
        from .synth import SynthConfig, run_synth

        print(run_synth(load_config(SynthConfig, config_path, output_dir=output_dir)))
    else:
        from .curriculum import load_curriculum, run_curriculum

        print(run_curriculum(load_curriculum(config_path, output_dir=output_dir)))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run(args.command, args.config, args.output_dir)
    except (ConfigError, DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
