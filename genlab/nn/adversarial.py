"""Building blocks shared by the adversarial models (DCGAN, conditional GAN, BiGAN).

The three models use the same convolutional generator and discriminator
bodies, sized by the data as in Radford et al. 2016 ("Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial
Networks", arXiv:1511.06434): the generator projects z to a small feature map
and doubles its side at each stage; the discriminator mirrors it with stride-2
convolutions. Everything here works on images in [0, 1] (the data scale): the
generator ends in tanh mapped to [0, 1], the discriminator maps its input to
[-1, 1] before the first convolution.

Weights are initialised as in DCGAN (N(0, 0.02), batch-norm gains N(1, 0.02),
biases 0) when each layer is built, before any spectral normalisation wraps it.

(These blocks serve the adversarial family only; if another family needs them
they belong in ``genlab/nn/``.)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genlab.config import check_fields
from genlab.errors import InputError
from genlab.nn.spec import DataSpec
from genlab.rng import rand_per_sample, randn_per_sample

Prior = Literal["normal", "uniform"]
Upsample = Literal["transposed", "nearest-conv"]
GNorm = Literal["batch", "none"]
DNorm = Literal["batch", "layer", "spectral", "none"]

MIN_BASE = 4  # smallest side of the generator's first feature map


def stages_for(data: DataSpec) -> tuple[int, int, int]:
    """How many stride-2 stages fit the image, and the size of the smallest feature map.

    The image is halved while both sides stay even and at least ``MIN_BASE``:
    28x28 -> 2 stages from 7x7, 32x32 -> 3 stages from 4x4, 8x8 -> 1 stage
    from 4x4, 28x20 (Frey faces) -> 2 stages from 7x5.

    Returns:
        (stages, base_height, base_width).
    """
    h, w, k = data.height, data.width, 0
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= MIN_BASE and w // 2 >= MIN_BASE:
        h, w, k = h // 2, w // 2, k + 1
    if k == 0:
        raise InputError(
            f"the DCGAN networks halve the image at least once, down to a side of {MIN_BASE} or more; "
            f"{data.height}x{data.width} images cannot be halved (use even sides of 8 or more, e.g. 8, 28, 32, 64)"
        )
    return k, h, w


def latent_noise(prior: Prior, n: int, dim: int, device=None,
                 generators: list[torch.Generator] | None = None) -> torch.Tensor:
    """(n, dim) draws from the latent prior.

    Args:
        prior: "normal" (N(0, I)) or "uniform" (U[-1, 1]^dim, as in DCGAN and BiGAN).
        n: number of rows; must equal len(generators) when generators are given.
        dim: latent dimension.
        device: where the tensor lives.
        generators: one generator per row (sampling: row i uses only generators[i]),
            or None to use the global generator (training, which the trainer seeds).
    """
    if generators is not None and len(generators) != n:
        raise InputError(f"asked for {n} latents with {len(generators)} generators; give one per sample")
    if prior == "normal":
        if generators is None:
            return torch.randn(n, dim, device=device)
        return randn_per_sample(generators, (dim,), device)
    if prior == "uniform":
        u = torch.rand(n, dim, device=device) if generators is None else rand_per_sample(generators, (dim,), device)
        return u * 2 - 1
    raise InputError(f"unknown latent prior {prior!r}; use normal or uniform")


def init_layer(layer: nn.Module, std: float, spectral: bool = False) -> nn.Module:
    """DCGAN initialisation of one weight layer, then optional spectral normalisation.

    Spectral norm (Miyato et al. 2018, arXiv:1802.05957) is applied last so its
    power iteration starts from the initialised weight.
    """
    with torch.no_grad():
        layer.weight.normal_(0.0, std)
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()
    return spectral_norm(layer) if spectral else layer


def batch_norm(channels: int, std: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.normal_(1.0, std)
    return bn


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias are looked up per class (de Vries et al. 2017,
    arXiv:1707.00683; Dumoulin et al. 2017, arXiv:1610.07629), as in the generator
    of Miyato & Koyama 2018."""

    def __init__(self, channels: int, num_classes: int, std: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        with torch.no_grad():
            self.gain.weight.normal_(1.0, std)
            self.bias.weight.zero_()

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(h) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class GeneratorNorm(nn.Module):
    """Generator normalisation: batch norm, class-conditional batch norm, or identity."""

    def __init__(self, kind: GNorm, channels: int, num_classes: int, std: float):
        super().__init__()
        if kind not in ("batch", "none"):
            raise InputError(f"unknown generator norm {kind!r}; use batch or none")
        self.conditional = num_classes > 0 and kind == "batch"
        if self.conditional:
            self.norm = ConditionalBatchNorm2d(channels, num_classes, std)
        else:
            self.norm = batch_norm(channels, std) if kind == "batch" else nn.Identity()

    def forward(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.norm(h, y) if self.conditional else self.norm(h)


class ConvGenerator(nn.Module):
    """z (B, latent) [, y (B,)] -> images (B, C, H, W) in [0, 1].

    "Project and reshape" z to (width * 2^(k-1), h0, w0), then k stages that
    double the side and halve the channels (batch norm then ReLU), the last
    one to the image channels and tanh. With ``num_classes > 0`` every batch
    norm is class-conditional.
    """

    def __init__(self, data: DataSpec, latent_dim: int, width: int, upsample: Upsample = "transposed",
                 norm: GNorm = "batch", num_classes: int = 0, std: float = 0.02):
        super().__init__()
        k, h0, w0 = stages_for(data)
        chans = [width * 2 ** (k - 1 - i) for i in range(k)]  # input channels of each stage, deepest first
        self.num_classes = num_classes
        self.start = (chans[0], h0, w0)
        # A bias followed by batch norm is cancelled by it, so layers before a norm have none.
        self.project = init_layer(nn.Linear(latent_dim, chans[0] * h0 * w0, bias=norm == "none"), std)
        self.norms = nn.ModuleList([GeneratorNorm(norm, chans[0], num_classes, std)])
        self.ups = nn.ModuleList()
        for i in range(k):
            last = i == k - 1
            c_in, c_out = chans[i], data.channels if last else chans[i + 1]
            bias = last or norm == "none"
            if upsample == "transposed":
                self.ups.append(init_layer(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias), std))
            elif upsample == "nearest-conv":
                # Odena et al. 2016 (distill.pub/2016/deconv-checkerboard): no checkerboard artefacts.
                self.ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                              init_layer(nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias), std)))
            else:
                raise InputError(f"unknown upsample {upsample!r}; use transposed or nearest-conv")
            if not last:
                self.norms.append(GeneratorNorm(norm, c_out, num_classes, std))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and y is None:
            raise InputError("this generator is class-conditional: pass labels y")
        h = self.project(z).view(-1, *self.start)  # (B, C0, h0, w0)
        h = torch.relu(self.norms[0](h, y))
        for i, up in enumerate(self.ups):
            h = up(h)
            if i + 1 < len(self.ups):
                h = torch.relu(self.norms[i + 1](h, y))
        return (torch.tanh(h) + 1) / 2  # (B, C, H, W) in [0, 1]


def _d_norm(norm: DNorm, channels: int, std: float) -> nn.Module:
    if norm == "batch":
        return batch_norm(channels, std)
    if norm == "layer":
        # Layer norm over (C, H, W): Gulrajani et al. 2017 replace batch norm by it in a
        # penalised critic, whose per-example gradient batch norm would mix across the batch.
        return nn.GroupNorm(1, channels)
    if norm in ("spectral", "none"):
        return nn.Identity()
    raise InputError(f"unknown discriminator norm {norm!r}; use batch, layer, spectral or none")


class ConvFeatures(nn.Module):
    """images (B, C, H, W) in [0, 1] -> flat features (B, width * 2^(k-1) * h0 * w0).

    k stride-2 4x4 convolutions with LeakyReLU(0.2), doubling the channels; no
    normalisation on the first layer (Radford et al. 2016). Used by the
    discriminators and by the BiGAN encoder.
    """

    def __init__(self, data: DataSpec, width: int, norm: DNorm = "batch", dropout: float = 0.0, std: float = 0.02):
        super().__init__()
        k, h0, w0 = stages_for(data)
        layers: list[nn.Module] = []
        c_in = data.channels
        for i in range(k):
            c_out = width * 2**i
            conv = nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=i == 0 or norm != "batch")
            layers.append(init_layer(conv, std, spectral=norm == "spectral"))
            if i > 0:
                layers.append(_d_norm(norm, c_out, std))
            layers.append(nn.LeakyReLU(0.2))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.out_dim = c_in * h0 * w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2 - 1).flatten(1)  # centre the [0, 1] data on [-1, 1]


class ConvDiscriminator(nn.Module):
    """images (B, C, H, W) in [0, 1] [, y (B,)] -> raw scores (B,).

    The score is a logit for the logistic losses and an unbounded critic value
    for the least-squares, hinge and Wasserstein losses. With ``num_classes > 0``
    it adds the projection term <embed(y), phi(x)> of Miyato & Koyama 2018
    ("cGANs with Projection Discriminator", arXiv:1802.05637).
    """

    def __init__(self, data: DataSpec, width: int, norm: DNorm = "batch", num_classes: int = 0, std: float = 0.02):
        super().__init__()
        self.features = ConvFeatures(data, width, norm, std=std)
        self.head = init_layer(nn.Linear(self.features.out_dim, 1), std, spectral=norm == "spectral")
        self.num_classes = num_classes
        if num_classes:
            self.embed = init_layer(nn.Embedding(num_classes, self.features.out_dim), std, spectral=norm == "spectral")

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x)  # (B, F)
        out = self.head(phi).squeeze(1)
        if self.num_classes:
            if y is None:
                raise InputError("this discriminator is class-conditional: pass labels y")
            out = out + (self.embed(y) * phi).sum(1)
        return out  # (B,)


def check_gan_knobs(cfg) -> None:
    """The checks every GAN config shares: the ranges its fields declare (sizes, critic steps, init scale...).

    Run again here, not only when a RunConfig is validated, so a network built from a hand-made Config is checked too.
    """
    check_fields(cfg)
