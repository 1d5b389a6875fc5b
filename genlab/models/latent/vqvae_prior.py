"""VQ-VAE, second stage: an autoregressive prior over the token grids of a frozen first stage.

van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning"
(arXiv:1711.00937), Sections 3.2 and 4: after the autoencoder (``vqvae``, the first stage)
is trained, its encoder's token grids z_q(x) of the training images are modelled by an
autoregressive prior (a PixelCNN in the paper); samples are prior token grids passed
through the first stage's decoder.

The prior is one of genlab's autoregressive image models (``pixel-transformer`` or
``gated-pixelcnn``), built on a one-channel "image" of h x w tokens with L = 2**bits levels,
bits = max(8, ceil(log2 K)): token k is level k (the value k / (L - 1) the autoregressive
models read), so the model's L-way categorical head, its sampler and its sampling cache
(the transformer's key/value cache, the gated PixelCNN's row caches) apply to tokens
unchanged. Levels K..L-1 are no tokens: their logits are set to -inf, so the prior is a
distribution over the K codes. A codebook of at most 256 codes keeps the 8-bit head of
genlab's image models (and of every prior trained before wider codebooks were allowed);
the paper's K = 512 gets a 512-way head.

Likelihood: the first stage's encoder is deterministic (nearest code), and the model
p(x) = sum_z p_prior(z) p(x | z) has p(x) >= p_prior(z_q(x)) p(x | z_q(x)) (one term of
the sum), so

    -log p(x) <= -log p_prior(z_q(x)) - log p(x | z_q(x))     (nats per image)

is an upper bound, the ELBO of the delta posterior at z_q(x) (its entropy is 0). The
usual VQ-VAE caveat: the first stage was trained with straight-through gradients and a
commitment term, not on this bound, and z_q(x) is not the posterior mode, so the bound
can be loose; it is reported as a bound, never as the NLL. The prior's own number,
-log p_prior(z_q(x)) / (h w ln 2) bits per token, is exact for the token grid.

The frozen first stage is a submodule (``first_stage``) with gradients off and kept in
eval mode; the trainer loads it from the run folder named by ``first_stage`` and checks
the sha256 of its weights against ``first_stage_sha256`` (recorded when the prior's run
starts) on every later load (``genlab/train/run.py::build_model``). Built without a
first stage (the registry-wide model tester), the model holds an untrained ``vqvae`` of
that model's tiny size, a stand-in that ``genlab train`` refuses.

Differences from the paper: the prior is a small transformer (default) or gated
PixelCNN sized for CPU; the gated PixelCNN reads the token index as a number (k / (L - 1))
rather than an embedding, which suits unordered tokens less well than the transformer's
embedding table; the codebook has at most 2**16 codes (the widest categorical head).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genlab.card import ModelCard, SamplerSpec
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.distributions import PixelDistribution, to_levels
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS

FIRST_STAGE = "vqvae"  # the model the prior's first stage must be
MAX_TOKEN_BITS = 16  # the widest categorical head: 65,536 logits per token


def token_bits(codes: int) -> int:
    """Bits of the prior's token levels for K codes: 8 up to 256 codes (the image models' head), else ceil(log2 K)."""
    return max(8, (codes - 1).bit_length())


def mask_invalid(raw: torch.Tensor, codes: int) -> torch.Tensor:
    """Categorical logits (B, L, ...) with the levels that are no token (>= codes) at -inf."""
    return raw.masked_fill(torch.arange(raw.shape[1], device=raw.device).view(1, -1, *[1] * (raw.dim() - 2))
                           >= codes, float("-inf"))


class _ValidTokens:
    """A prior's sampling cache whose every step puts the logits of non-tokens at -inf."""

    def __init__(self, cache, codes: int):
        self.cache, self.codes = cache, codes

    def step(self, canvas, i, j, c):
        return mask_invalid(self.cache.step(canvas, i, j, c), self.codes)


@MODELS.register("vqvae-prior")
class VQVAEPrior(nn.Module):
    card = ModelCard(
        family="latent", default_objective="vq-prior",
        samplers=(SamplerSpec("vq-prior"),),
        evaluators=("vq-bound", "reconstruction", "codebook", "sample-quality"),
        likelihood="bound",  # -log p_prior(z_q(x)) - log p(x | z_q(x)) >= -log p(x)
        encoder="code",  # encode(x) -> the first stage's code vectors; tokens(x) -> (B, h, w)
        decoder="distribution",  # decode(code vectors) -> raw outputs of the first stage's decoder
        first_stage=FIRST_STAGE,
        ema_modules=("prior",),  # the frozen first stage is not averaged
        run_defaults={"optim.lr": 5e-4, "optim.warmup_steps": 100, "train.batch_size": 64},
        tiny=dict(width=8, layers=2, heads=2),
    )

    @dataclass
    class Config:
        first_stage: str = ""  # run (or exported) folder of a trained vqvae: the frozen first stage
        first_stage_sha256: str = ""  # sha256 of its weights, recorded at the run's start and checked at each load
        # cached: the training split's tokens computed once into RUN_DIR/codes.safetensors; on-the-fly: encode
        # every batch (needed for dynamically binarized data, whose images change every epoch)
        codes: Literal["cached", "on-the-fly"] = "cached"
        prior: Literal["pixel-transformer", "gated-pixelcnn"] = "pixel-transformer"
        width: int = bounded(64, ge=1)  # transformer d_model, or gated PixelCNN feature maps
        layers: int = bounded(4, ge=1)  # transformer blocks, or gated layers
        heads: int = bounded(4, ge=1)  # attention heads (pixel-transformer only)
        dropout: float = bounded(0.0, ge=0.0, lt=1.0)  # attention/MLP dropout (pixel-transformer only)

    def __init__(self, cfg: Config, data: DataSpec, first_stage: nn.Module | None = None):
        super().__init__()
        self.cfg, self.data = cfg, data
        if first_stage is None:  # the model tester's stand-in (see the module docstring)
            stage_cls = MODELS.get(FIRST_STAGE)
            first_stage = stage_cls(dataclasses.replace(stage_cls.Config(), **stage_cls.card.tiny), data)
        self.first_stage = first_stage.requires_grad_(False).eval()
        self.codes = first_stage.quantizer.size
        if token_bits(self.codes) > MAX_TOKEN_BITS:
            raise InputError(f"the prior models at most {2**MAX_TOKEN_BITS} tokens; this first stage has "
                             f"{self.codes} codes: train it with model.codebook_size<={2**MAX_TOKEN_BITS}")
        h, w = first_stage.grid
        self.token_spec = DataSpec(channels=1, height=h, width=w, bits=token_bits(self.codes))  # token k is level k
        prior_cls = MODELS.get(cfg.prior)
        if cfg.prior == "pixel-transformer":
            size = dict(d_model=cfg.width, layers=cfg.layers, heads=cfg.heads, dropout=cfg.dropout)
        else:
            size = dict(channels=cfg.width, layers=cfg.layers, head_channels=2 * cfg.width,
                        first_kernel=min(7, 2 * max(h, w) - 1))
        self.prior = prior_cls(dataclasses.replace(prior_cls.Config(), likelihood="categorical", **size),
                               self.token_spec)

    def phases(self) -> list[Phase]:
        return [Phase("main", ("prior",))]  # the first stage is frozen

    def train(self, mode: bool = True):
        super().train(mode)
        self.first_stage.eval()  # frozen: its modules stay in evaluation mode while the prior trains
        return self

    # ---- the first stage (frozen) -------------------------------------------------------

    @property
    def quantizer(self):
        return self.first_stage.quantizer

    @property
    def grid(self) -> tuple[int, int]:
        return self.first_stage.grid

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> token grids (B, h, w) of the first stage."""
        return self.first_stage.tokens(x)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.first_stage.encode(x, y)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.first_stage.decode(z, y)

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (B, h, w) -> raw likelihood parameters of the image."""
        return self.first_stage.decode_tokens(tokens)

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        """The first stage's pixel distribution p(x | z_q) from decoded raw outputs."""
        return self.first_stage.distribution(raw)

    # ---- the prior over tokens ----------------------------------------------------------

    def token_image(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (B, h, w) int64 -> the prior's input (B, 1, h, w): token k as the level k of L."""
        return tokens.unsqueeze(1).float() / (self.token_spec.levels - 1)

    def image_tokens(self, canvas: torch.Tensor) -> torch.Tensor:
        """The inverse of ``token_image``: the prior's (B, 1, h, w) canvas -> token grids (B, h, w) int64."""
        return to_levels(canvas, self.token_spec.levels)[:, 0]

    def prior_distribution(self, raw: torch.Tensor) -> PixelDistribution:
        """The prior's categorical distribution over the token image, from ``forward``'s raw outputs."""
        return self.prior.distribution(raw)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (B, h, w) -> the prior's raw outputs (B, L, h, w), teacher-forced; non-tokens at -inf."""
        return mask_invalid(self.prior(self.token_image(tokens)), self.codes)

    def token_cache(self, batch: int) -> _ValidTokens:
        """The prior's sampling cache (key/value or row caches) with the non-tokens masked."""
        return _ValidTokens(self.prior.sampling_cache(batch, None), self.codes)
