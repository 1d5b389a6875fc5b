"""PixelRNN: Row LSTM and Diagonal BiLSTM.

van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks"
(arXiv:1601.06759), Sections 3.1-3.3 and Table 1: a 7x7 type-A masked convolution,
a stack of residual recurrent layers (Row LSTM or Diagonal BiLSTM, see
``genlab.nn.recurrent``), then two ReLU + 1x1 type-B layers and a per-sub-pixel
output. Colour images order R before G before B inside every pixel through the
masks, as in the PixelCNN of the same paper.

Differences from the paper: the default width and depth are small enough to train
on a CPU (the paper uses h = 128 hidden units and 12 layers on CIFAR-10, 7 layers on
MNIST); the outputs can also be the PixelCNN++ discretized logistic mixture (the
heads are those of the PixelCNN family, ``heads.py``); the paper's Diagonal BiLSTM
uses learned initial states, here they are zero.

Receptive fields (tests/test_autoregressive.py checks both by gradients): the Row
LSTM's is the triangle above the pixel; the Diagonal BiLSTM's is every earlier
sub-pixel but one: the last sub-pixel of the row above is in no feature of its own
row (the type-A mask), so a pixel more than first_kernel // 2 columns from the right
edge does not see it. The paper calls the field complete; this follows its
architecture as written.

Sampling cache (``sampling_cache``): for the Row LSTM the recurrent state of every
layer is carried down the image, so a step recomputes one row of every layer from
the stored state of the row above instead of the whole image. The Diagonal BiLSTM
has no cache (its right-to-left direction at a pixel reads the whole row above and
the left-to-right one the whole diagonal): a step recomputes the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlab.card import ConditioningSpec, ModelCard, SamplerSpec, TINY_RGB
from genlab.config import bounded
from genlab.errors import InputError
from genlab.models.autoregressive.heads import AutoregressiveHead, Likelihood
from genlab.nn.distributions import PixelDistribution
from genlab.nn.masked import MaskedConv2d
from genlab.nn.recurrent import DiagonalBiLSTM, RowLSTM
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS

Layer = Literal["row", "diagonal"]
_LAYERS = {"row": RowLSTM, "diagonal": DiagonalBiLSTM}


@MODELS.register("pixelrnn")
class PixelRNN(nn.Module):
    card = ModelCard(
        family="autoregressive", default_objective="nll", samplers=(SamplerSpec("autoregressive"),),
        evaluators=("exact-nll",), likelihood="exact",
        conditioning=ConditioningSpec(partial_image=True),  # unconditional; completes given top rows
        run_defaults={"optim.lr": 1e-3, "train.batch_size": 16},
        tiny=dict(layer="row", hidden=3, layers=2, first_kernel=3, head_channels=6),  # diagonal: tests/test_autoregressive.py
        tiny_data=TINY_RGB,
    )

    @dataclass
    class Config:
        likelihood: Likelihood = "auto"  # auto: bernoulli for binary data, categorical for 8-bit
        layer: Layer = "diagonal"  # row: Row LSTM (triangular field); diagonal: Diagonal BiLSTM (whole past)
        hidden: int = bounded(32, ge=1)  # h, LSTM units per layer; features between layers are 2h (paper 128)
        layers: int = bounded(4, ge=1)  # recurrent layers (paper: 7 on MNIST, 12 on CIFAR-10)
        first_kernel: int = bounded(7, ge=1, odd=True)  # the type-A input convolution (paper 7x7)
        head_channels: int = bounded(64, ge=1)  # width of the two ReLU + 1x1 output layers (paper 1024 on CIFAR)
        mixture_components: int = bounded(10, ge=1)  # logistic-mixture only

        def validate(self):
            if self.layer not in _LAYERS:
                raise InputError(f"model.layer must be one of {', '.join(_LAYERS)}, got {self.layer!r}")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        cfg.validate()
        self.cfg, self.data = cfg, data
        self.head = AutoregressiveHead.create(cfg.likelihood, data, cfg.mixture_components)
        g = self.head.colour_groups
        if cfg.hidden < g:
            raise InputError(f"model.hidden must be >= {g} (one unit per colour group)")
        features = 2 * cfg.hidden
        image_groups = self.head.image_groups()
        self.input = MaskedConv2d.raster(data.channels, features, cfg.first_kernel, "A", image_groups, g)
        self.layers = nn.ModuleList(_LAYERS[cfg.layer](features, cfg.hidden, g) for _ in range(cfg.layers))
        self.hidden = MaskedConv2d.raster(features, cfg.head_channels, 1, "B", g, g)
        self.output = MaskedConv2d.raster(cfg.head_channels, self.head.raw_channels, 1, "B", g,
                                          self.head.raw_groups())

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def _outputs(self, h: torch.Tensor) -> torch.Tensor:
        return self.output(F.relu(self.hidden(F.relu(h))))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1] -> raw outputs (B, R, H, W); pixel (i, j) sees only its past.

        ``y`` is accepted for a uniform signature and ignored: this model is unconditional.
        """
        h = self.input(x * 2 - 1)  # (B, 2h, H, W)
        for layer in self.layers:
            h = layer(h)
        return self._outputs(h)

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.distribution(raw)

    def sampling_cache(self, batch: int, y=None):
        """Row LSTM: carry the recurrent state down the image; Diagonal BiLSTM: recompute (see the docstring)."""
        return _RowStateCache(self) if self.cfg.layer == "row" else _Recompute(self)


class _Recompute:
    def __init__(self, model: PixelRNN):
        self.model = model

    def step(self, canvas: torch.Tensor, i: int, j: int, c: int) -> torch.Tensor:
        return self.model(canvas)[:, self.model.head.step_raw(c), i, j]


class _RowStateCache:
    """Row LSTM outputs pixel by pixel from the stored (h, c) of the row above, in every layer.

    ``step(canvas, i, j, c)`` must be called in raster order (then channel order), with
    ``canvas`` holding every sub-pixel before (i, j, c); it returns
    ``model(canvas)[:, head.step_raw(c), i, j]``. When row i starts, row i - 1 (now final)
    is run once more through every layer and its states are kept; every step then runs
    row i alone. The first convolution reads rows i - k/2 .. i of the canvas: the rows
    above that window are outside its kernel, so cropping them changes nothing.
    """

    def __init__(self, model: PixelRNN):
        self.model = model
        self.rows_done = 0  # states kept for rows < rows_done
        self.states = None

    def _row(self, canvas: torch.Tensor, i: int):
        """Raw outputs (B, R, W) of row i and every layer's state after it."""
        model = self.model
        lo = max(0, i - model.cfg.first_kernel // 2)
        h = model.input(canvas[:, :, lo : i + 1] * 2 - 1)[:, :, -1]  # (B, 2h, W)
        if self.states is None:
            self.states = [layer.initial_state(h) for layer in model.layers]
        states = []
        for layer, state in zip(model.layers, self.states):
            h, state = layer.row(h, state)
            states.append(state)
        return model._outputs(h[:, :, None])[:, :, 0], states

    def step(self, canvas: torch.Tensor, i: int, j: int, c: int) -> torch.Tensor:
        while self.rows_done < i:  # row i needs the final states of row i - 1
            _, self.states = self._row(canvas, self.rows_done)
            self.rows_done += 1
        raw, _ = self._row(canvas, i)
        return raw[:, self.model.head.step_raw(c), j]
