"""Small value types shared by data, models, objectives and the trainer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data, and nothing more.

    Batches reach models as float tensors (B, channels, height, width) with
    values in [0, 1]: exactly {0, 1} when ``bits == 1`` and multiples of 1/255
    when ``bits == 8``. Discrete likelihoods recover the integer levels.
    """

    channels: int
    height: int
    width: int
    bits: int  # 1: binary pixels; 8: 256 levels per sub-pixel
    num_classes: int = 0  # 0 when the dataset has no labels

    @property
    def dims(self) -> int:
        """Number of sub-pixels: the D in bits per dimension."""
        return self.channels * self.height * self.width

    @property
    def levels(self) -> int:
        return 2**self.bits

    def to_dict(self) -> dict:
        return dict(
            channels=self.channels,
            height=self.height,
            width=self.width,
            bits=self.bits,
            num_classes=self.num_classes,
        )


@dataclass(frozen=True)
class Phase:
    """One optimizer's share of a training step.

    Single-network models have one phase over all parameters. Two-player
    models (GANs) declare e.g. ``Phase("D", ("discriminator",))`` and
    ``Phase("G", ("generator",))``: the trainer builds one optimizer per phase
    over the parameters of the named submodules and runs the phases in order
    on every step whose index is a multiple of ``every``. Phases that name the
    same ``group`` share one optimizer and its state (StyleGAN's lazy
    regularization: ``Phase("Dmain", ("discriminator",), group="D")`` every
    step and ``Phase("Dreg", ("discriminator",), every=16, group="D")``); they
    must then name the same modules.
    """

    name: str
    modules: tuple[str, ...] | None = None  # None: every parameter of the model
    every: int = 1
    lr_scale: float = 1.0  # this phase's learning rate is optim.lr x lr_scale (e.g. two time-scale GANs)
    group: str | None = None  # the optimizer this phase steps (and its checkpoint key); None: the phase's name

    @property
    def optimizer_key(self) -> str:
        return self.group or self.name
