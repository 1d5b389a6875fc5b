"""What objectives without options share."""

from __future__ import annotations

from dataclasses import dataclass

from genlab.nn.spec import DataSpec


class OptionlessObjective:
    """An objective with no knobs: an empty typed Config (so ``--set objective.x=...`` is refused by name),
    and the data it is built for. Subclasses define ``__call__`` only."""

    @dataclass
    class Config:
        pass

    def __init__(self, cfg=None, data: DataSpec | None = None):
        self.cfg, self.data = cfg if cfg is not None else self.Config(), data
