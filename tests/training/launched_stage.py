"""Run one training stage under ``accelerate launch`` and report each rank's view of it.

Used by test_multiprocess: every rank writes ``rank{N}.json`` into the stage's output
folder with the distributed type, the world size, the process group backend and a hash
of the parameters it ended with (equal on all ranks only if gradients were synchronized).

    PYTHONPATH=. accelerate launch --multi_gpu --num_processes 2 tests/training/launched_stage.py {sft,grpo} CONFIG
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from transformers import TrainerCallback

from training.configuration import load_config
from training.grpo import GRPOStageConfig, run_grpo
from training.sft import SFTStageConfig, run_sft


class RankReport(TrainerCallback):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, args, state, control, model=None, **kwargs):
        import torch.distributed as dist

        digest = hashlib.sha256()
        for name, parameter in sorted(model.named_parameters()):
            digest.update(name.encode())
            digest.update(parameter.detach().float().cpu().numpy().tobytes())
        report = {
            "distributed_type": str(args.distributed_state.distributed_type),
            "world_size": args.world_size,
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "parameters": digest.hexdigest(),
            "steps": state.global_step,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{args.process_index}.json").write_text(json.dumps(report))


def main() -> None:
    kind, config_path = sys.argv[1], sys.argv[2]
    if kind == "sft":
        config = load_config(SFTStageConfig, config_path)
        run_sft(config, callbacks=[RankReport(Path(config.output_dir))])
    else:
        config = load_config(GRPOStageConfig, config_path)
        run_grpo(config, callbacks=[RankReport(Path(config.output_dir))])


if __name__ == "__main__":
    main()
