"""Small value types shared by data, models, objectives and the trainer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data, and nothing more.

    Batches reach models as float tensors (B, channels, height, width) with
    values in [0, 1]: exactly {0, 1} when ``bits == 1`` and multiples of 1/255
    when ``bits == 8``. Discrete likelihoods recover the integer levels.

    A 1-D signal (audio, ``sample_rate > 0``) has ``height == 1`` and ``width``
    samples per channel; its batches are (B, channels, width): ``shape`` is the
    shape of one example either way, so code that only moves examples around
    reads ``shape`` and never asks which kind of data it holds.
    """

    channels: int
    height: int
    width: int
    bits: int  # 1: binary pixels; 8: 256 levels per sub-pixel
    num_classes: int = 0  # 0 when the dataset has no labels
    # Two-domain runs (cyclegan) whose domain B has other channels than domain A (grey <-> colour); 0: the same.
    channels_b: int = 0
    sample_rate: int = 0  # > 0: a 1-D signal of ``width`` samples at this rate (Hz); 0: an image

    def __post_init__(self):
        if self.sample_rate and self.height != 1:
            raise ValueError(f"a 1-D signal has height 1, got {self.height}")  # a bug in whoever built it

    @property
    def is_signal(self) -> bool:
        return self.sample_rate > 0

    @property
    def example_noun(self) -> str:
        """What one example is called in messages: "clips" of a signal, "images" otherwise (plural)."""
        return "clips" if self.is_signal else "images"

    @property
    def shape(self) -> tuple[int, ...]:
        """One example's shape: (C, H, W) for an image, (C, W) for a 1-D signal."""
        return (self.channels, self.width) if self.is_signal else (self.channels, self.height, self.width)

    @property
    def dims(self) -> int:
        """Number of sub-pixels: the D in bits per dimension."""
        return self.channels * self.height * self.width

    @property
    def levels(self) -> int:
        return 2**self.bits

    def domain(self, which: str) -> "DataSpec":
        """The image format of domain ``"a"`` (``data.name``) or ``"b"`` (``data.domain_b``) of a two-domain run."""
        if which == "b" and self.channels_b:
            return DataSpec(self.channels_b, self.height, self.width, self.bits, self.num_classes,
                            sample_rate=self.sample_rate)
        return DataSpec(self.channels, self.height, self.width, self.bits, self.num_classes, sample_rate=self.sample_rate)

    def to_dict(self) -> dict:
        out = dict(
            channels=self.channels,
            height=self.height,
            width=self.width,
            bits=self.bits,
            num_classes=self.num_classes,
        )
        if self.channels_b:  # only two-domain runs with a channel change say it (older run folders read the same)
            out["channels_b"] = self.channels_b
        if self.sample_rate:  # images keep the data.json they always had
            out["sample_rate"] = self.sample_rate
        return out


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
