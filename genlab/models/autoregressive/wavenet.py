"""WaveNet.

van den Oord, Dieleman, Zen, Simonyan, Vinyals, Graves, Kalchbrenner, Senior & Kavukcuoglu 2016,
"WaveNet: A Generative Model for Raw Audio" (arXiv:1609.03499): p(x) = prod_t p(x_t | x_<t) over
mu-law codes (Sec. 2.2, a 256-way softmax), computed by stacks of dilated causal convolutions with
dilations 1, 2, 4, ..., 2^(layers_per_stack - 1), repeated ``stacks`` times (Sec. 2.1), gated
activation units tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h) (Sec. 2.3), residual and
parameterized skip connections (Sec. 2.4), and global conditioning h on the class label (the spoken
digit) and, with ``speakers`` > 0, on the speaker too (Sec. 2.5: V^T h is a per-layer learned bias).

Causality: the input is shifted one step right (the output at t sees codes x_0..x_{t-1} only), then
every dilated layer pads on the left. Receptive field (samples an output sees) =
1 + (kernel - 1) * stacks * (2^layers_per_stack - 1); ``receptive_field()`` gives it, a test checks it
by gradients.

Fast generation (Paine et al. 2016, "Fast Wavenet Generation Algorithm", arXiv:1611.09482):
``sampling_cache`` keeps, for every dilated layer, a ring buffer of its last (kernel - 1) * dilation
inputs, so one new sample costs one column of every layer (O(layers)) instead of a forward pass over
the whole past. It computes the same numbers as the full forward pass (tests: same samples).

Differences from the paper: the input code enters through a learned embedding (the paper one-hot
encodes it, which is the same thing as an embedding followed by a 1x1 convolution); the default sizes
are small enough to train on a CPU (the paper does not state its sizes); no local conditioning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.card import ConditioningSpec, ModelCard, SamplerSpec
from genlab.config import bounded
from genlab.errors import InputError
from genlab.models.autoregressive.heads import AutoregressiveHead
from genlab.nn.audio import LEVELS, model_input_to_codes
from genlab.nn.distributions import PixelDistribution
from genlab.nn.labels import batch_labels
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS

# The registry-wide tester's data: a short labelled 8-bit signal (1-D, like FSDD but 48 samples).
TINY_AUDIO = dict(channels=1, height=1, width=48, bits=8, num_classes=10, sample_rate=8000)


class _GatedLayer(nn.Module):
    """One dilated causal layer: gated unit, then a 1x1 to the residual stream and a 1x1 to the skips."""

    def __init__(self, residual: int, gate: int, skip: int, kernel: int, dilation: int, classes: int, speakers: int):
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.conv = nn.Conv1d(residual, 2 * gate, kernel, dilation=dilation)  # filter and gate halves
        self.label = nn.Embedding(classes, 2 * gate) if classes else None  # V^T h for a one-hot h
        self.speaker = nn.Embedding(speakers, 2 * gate) if speakers else None
        self.residual = nn.Conv1d(gate, residual, 1)
        self.skip = nn.Conv1d(gate, skip, 1)

    @property
    def past(self) -> int:
        """How many earlier inputs of this layer one output reads: (kernel - 1) * dilation."""
        return (self.kernel - 1) * self.dilation

    def bias(self, y, speaker) -> torch.Tensor | int:
        """The global conditioning (B, 2G, 1), or 0 for an unconditional layer."""
        out = 0 if self.label is None else self.label(y)[:, :, None]
        return out if self.speaker is None else out + self.speaker(speaker)[:, :, None]

    def gated(self, pre: torch.Tensor, cond) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-activations (B, 2G, T) -> (residual update (B, R, T), skip (B, S, T))."""
        f, g = (pre + cond).chunk(2, dim=1)
        z = torch.tanh(f) * torch.sigmoid(g)
        return self.residual(z), self.skip(z)

    def forward(self, h: torch.Tensor, cond) -> tuple[torch.Tensor, torch.Tensor]:
        res, skip = self.gated(self.conv(F.pad(h, (self.past, 0))), cond)  # left padding only: causal
        return h + res, skip


@MODELS.register("wavenet")
class WaveNet(nn.Module):
    card = ModelCard(
        family="autoregressive", default_objective="nll", samplers=(SamplerSpec("autoregressive-1d"),),
        evaluators=("exact-nll", "spoken-digits"), likelihood="exact",
        conditioning=ConditioningSpec(class_label="config", speaker=True),
        run_defaults={"data.name": "fsdd", "optim.lr": 1e-3, "train.batch_size": 8, "optim.grad_clip": 1.0},
        tiny=dict(residual_channels=6, gate_channels=6, skip_channels=8, layers_per_stack=3, stacks=2),
        tiny_data=TINY_AUDIO,
    )

    @dataclass
    class Config:
        residual_channels: int = bounded(32, ge=1)  # width of the residual stream
        gate_channels: int = bounded(32, ge=1)  # width of each gated unit (filter and gate halves each)
        skip_channels: int = bounded(64, ge=1)  # width of the skip sum and the output layers
        kernel: int = bounded(2, ge=2)  # taps of each dilated convolution (paper: 2)
        layers_per_stack: int = bounded(8, ge=1)  # dilations 1, 2, ..., 2^(layers_per_stack - 1)
        stacks: int = bounded(2, ge=1)  # repetitions of the dilation cycle
        conditional: bool = True  # global conditioning on the class label (the spoken digit)
        speakers: int = bounded(0, ge=0)  # > 0: also condition on batch["speaker"] in 0..speakers-1 (FSDD: 6)

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        if not data.is_signal or data.channels != 1 or data.bits != 8:
            raise InputError("wavenet models 1-D 8-bit signals (mono mu-law audio such as data.name=fsdd)")
        if cfg.conditional and not data.num_classes:
            raise InputError("model.conditional=true needs labelled data; set model.conditional=false")
        self.cfg, self.data = cfg, data
        self.head = AutoregressiveHead.create("categorical", data)
        classes = data.num_classes if cfg.conditional else 0
        self.embed = nn.Embedding(LEVELS, cfg.residual_channels)  # the paper's one-hot input, then a 1x1
        self.layers = nn.ModuleList(
            _GatedLayer(cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.kernel, 2**i, classes,
                        cfg.speakers)
            for _ in range(cfg.stacks) for i in range(cfg.layers_per_stack))
        self.hidden = nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1)
        self.output = nn.Conv1d(cfg.skip_channels, self.head.raw_channels, 1)

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def receptive_field(self) -> int:
        """Samples one output sees: x_{t-1} (the shifted input) plus every layer's reach into the past."""
        return 1 + sum(layer.past for layer in self.layers)

    def conditions(self, y, speaker, batch: int) -> list:
        """Each layer's global-conditioning bias for a batch."""
        y = batch_labels(y, batch, "wavenet") if self.cfg.conditional else None
        if self.cfg.speakers:
            speaker = batch_labels(speaker, batch, "wavenet with model.speakers > 0 (speaker inputs)")
        return [layer.bias(y, speaker) for layer in self.layers]

    def embed_codes(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, L) in [0, 1] -> embedded codes (B, R, L), not yet shifted."""
        return self.embed(model_input_to_codes(x[:, 0])).transpose(1, 2)

    def finish(self, skips: torch.Tensor) -> torch.Tensor:
        """Sum of skips (B, S, T) -> raw logits (B, 256, T)."""
        return self.output(F.relu(self.hidden(F.relu(skips))))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None,
                speaker: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 1, L) in [0, 1] (mu-law codes / 255) -> logits (B, 256, L); output t sees x_<t only."""
        return self.from_embedded(self.embed_codes(x), y, speaker)

    def from_embedded(self, e: torch.Tensor, y: torch.Tensor | None = None,
                      speaker: torch.Tensor | None = None) -> torch.Tensor:
        """Embedded codes (B, R, L) -> logits (B, 256, L): the causal part (a test differentiates through it)."""
        h = F.pad(e, (1, 0))[:, :, :-1]  # shifted one step right: output t reads inputs before t only
        skips = 0
        for layer, cond in zip(self.layers, self.conditions(y, speaker, e.shape[0])):
            h, skip = layer(h, cond)
            skips = skips + skip
        return self.finish(skips)

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        """Logits (B, 256, L) -> a 256-way categorical over (B, 1, L) codes / 255."""
        return self.head.distribution(raw)

    def sampling_cache(self, batch: int, y=None, speaker=None) -> "QueueCache":
        return QueueCache(self, batch, y, speaker)


class QueueCache:
    """Fast generation (Paine et al. 2016): one ring buffer (queue) of past inputs per dilated layer.

    ``step(x, t)`` gives the logits (B, 256) of sample t from the codes x[..., :t] drawn so far and must
    be called for t = 0, 1, 2, ... in order. Layer l keeps its last (kernel - 1) * d_l inputs in a
    buffer of that length: the input of time s lives in row s mod length, so the taps t - j * d_l
    (j = 1..kernel-1) are one index each and nothing is shifted; rows never written are the zero
    padding of the full forward pass. Each step costs one column per layer, O(layers) not O(t), as
    matrix products on (B, channels) vectors: the layer's weights are read once here, as matrices
    (a convolution call per tiny column costs more than its arithmetic).
    """

    def __init__(self, model: WaveNet, batch: int, y, speaker=None):
        self.model, self.t = model, 0
        p = next(model.parameters())
        R = model.cfg.residual_channels
        self.layers = []
        for layer, cond in zip(model.layers, model.conditions(y, speaker, batch)):
            w = layer.conv.weight  # (2G, R, kernel): tap j reads the input at t - (kernel - 1 - j) * d
            bias = (layer.conv.bias + (cond[:, :, 0] if torch.is_tensor(cond) else 0)).expand(batch, -1)
            taps = w.permute(0, 2, 1).reshape(w.shape[0], -1).t()  # (kernel * R, 2G), oldest tap first
            out_w = torch.cat([layer.residual.weight[:, :, 0], layer.skip.weight[:, :, 0]]).t()  # (G, R + S)
            out_b = torch.cat([layer.residual.bias, layer.skip.bias])
            queue = torch.zeros(batch, layer.past, R, device=p.device, dtype=p.dtype)  # (B, past, R)
            self.layers.append((layer.kernel, layer.dilation, queue, taps, bias.contiguous(), out_w, out_b))

    def step(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if t != self.t:
            raise AssertionError(f"the queue cache steps in order: expected t={self.t}, got {t}")
        m = self.model
        if t == 0:  # nothing before the first sample: the full pass's left padding
            h = x.new_zeros(x.shape[0], m.cfg.residual_channels)
        else:
            h = m.embed(model_input_to_codes(x[:, 0, t - 1]))  # (B, R)
        R, skips = h.shape[1], 0
        for kernel, dilation, queue, taps, bias, out_w, out_b in self.layers:
            size = queue.shape[1]
            window = torch.cat([queue[:, (t - j * dilation) % size] for j in range(kernel - 1, 0, -1)] + [h], dim=1)
            queue[:, t % size] = h  # after reading: the oldest tap may live in this row
            f, g = torch.addmm(bias, window, taps).chunk(2, dim=1)  # (B, G) each
            out = torch.addmm(out_b, torch.tanh(f) * torch.sigmoid(g), out_w)  # (B, R + S)
            h = h + out[:, :R]
            skips = skips + out[:, R:]
        self.t += 1
        return m.finish(skips[:, :, None])[:, :, 0]
