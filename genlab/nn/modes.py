"""Module modes that must be restored: run a network in eval mode and give it back as it was."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``with eval_mode(net):`` runs ``net`` in eval mode (dropout off, batch-norm running statistics)
    and restores its previous train/eval mode afterwards, also when the body raises, so that an
    evaluation or a sampler called in the middle of training leaves the trainer's model as it was."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
