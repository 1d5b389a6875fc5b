"""Batches from an in-memory ImageSet, in an order that is a pure function of (seed, step).

No worker processes: the data is a uint8 tensor already on the training device,
and a batch is one index operation. Because the order is derived from the step
number, a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import torch

from genlab.data.base import ImageSet
from genlab.errors import InputError
from genlab.rng import sample_seed


class BatchStream:
    """Global batches of ``global_batch`` examples per optimizer step, split into micro-batches.

    Each epoch is a fresh permutation seeded by (seed, epoch); the last incomplete
    global batch of an epoch is dropped. The global batch for a step is reshaped to
    (accum, world, micro) and process ``rank`` takes slice [m, rank] on micro-step m,
    so the union over processes and micro-steps is exactly the single-process batch.
    """

    def __init__(self, data: ImageSet, global_batch: int, accum: int, seed: int, rank: int = 0, world: int = 1):
        if global_batch % (accum * world):
            raise InputError(
                f"train.batch_size={global_batch} must be divisible by grad_accum x processes = {accum} x {world}"
            )
        if global_batch > len(data):
            raise InputError(f"train.batch_size={global_batch} is larger than the {len(data)} training images")
        self.data, self.global_batch, self.accum = data, global_batch, accum
        self.seed, self.rank, self.world = seed, rank, world
        self.micro = global_batch // (accum * world)
        self.steps_per_epoch = len(data) // global_batch
        self._epoch, self._order = -1, None

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch))
            self._order = torch.randperm(len(self.data), generator=g).to(self.data.images.device)
            self._epoch = epoch
        return self._order

    def micro_batches(self, step: int) -> list[dict]:
        """This process's micro-batches for optimizer step ``step`` (0-based)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        index = order[pos * self.global_batch:(pos + 1) * self.global_batch].view(self.accum, self.world, self.micro)
        batches = []
        for m in range(self.accum):
            # Dynamic binarization draws from a generator tied to (step, micro-step, rank): resumable.
            g = torch.Generator(device=self.data.images.device)
            g.manual_seed(sample_seed(self.seed + 7919 * (self.rank + 1), step * self.accum + m))
            batches.append(self.data.batch(index[m, self.rank], g))
        return batches

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch
