"""Helpers of test_train_step.py; run as a script under torchrun for the two-process data-init test.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/train_workers.py OUT_DIR KEY=VALUE...

Each process writes OUT_DIR/rank{R}.safetensors: its weights when the first training step begins,
i.e. after the data-dependent initialization and the broadcast of rank 0's parameters.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

INIT_TARGET = "decoder.conv.9.bias"  # (2,): the output layer's bias, set from the data as ActNorm would


def mean_init(model, batch: dict) -> None:
    """A data-dependent initialization: the output bias becomes the mean pixel of the first batch."""
    model.get_parameter(INIT_TARGET).fill_(batch["x"].mean())


def main(out_dir: str, overrides: list[str]) -> None:
    from dataclasses import dataclass

    from safetensors.torch import save_file

    from genlab.config import RunConfig, apply_overrides
    from genlab.models.latent.autoencoder import Autoencoder
    from genlab.registry import OBJECTIVES
    from genlab.train.loop import train

    @OBJECTIVES.register("test-dump-start")
    class DumpStart:
        """Reconstruction, writing this process's weights the first time it is called."""

        @dataclass
        class Config:
            pass

        def __init__(self, cfg, data):
            self.inner = OBJECTIVES.get("reconstruction")(OBJECTIVES.get("reconstruction").Config(), data)
            self.dumped = False

        def __call__(self, model, batch, phase, step):
            if not self.dumped:
                state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
                save_file(state, str(Path(out_dir) / f"rank{os.environ.get('RANK', '0')}.safetensors"))
                self.dumped = True
            return self.inner(model, batch, phase, step)

    Autoencoder.data_init = mean_init
    cfg = apply_overrides(RunConfig.create("autoencoder", "test-dump-start"), overrides)
    train(cfg, Path(out_dir) / "run")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
