"""Hierarchical VAE with a residual top-down path.

Sonderby, Raiko, Maaloe, Sonderby & Winther 2016, "Ladder Variational Autoencoders"
(arXiv:1602.02282): the generative model and the posterior share one top-down pass,
p(z) = p(z_1) prod_g p(z_g | z_<g) and q(z | x) = prod_g q(z_g | x, z_<g), so every
group's posterior is informed by the data (bottom-up) and by the groups above it
(top-down). The residual top-down design follows NVAE (Vahdat & Kautz 2020,
arXiv:2007.03898) and VD-VAE (Child 2021, arXiv:2011.10650): a bottom-up ResNet
stores one activation per resolution; the top-down path starts from a learned
tensor at the lowest resolution and, per latent group, reads the prior from its
state, the posterior from its state and the bottom-up activation, and adds a 1x1
projection of the sample back into its state.

Differences from the papers: much smaller (CPU-sized presets); the top group's
prior is a fixed N(0, I) so that a one-group model is exactly a VAE with this
encoder and decoder (tests/test_hvae.py checks it against `vae`'s objective and
IWAE bound); the top group may take an inverse autoregressive flow posterior
(Kingma et al. 2016, arXiv:1606.04934; genlab/nn/iaf.py); no squeeze-excitation,
spectral regularization or mixed precision tricks of NVAE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.card import ModelCard, SamplerSpec
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.conv import ResBlock, check_divisible
from genlab.nn.distributions import LIKELIHOODS, PixelDistribution, make_head
from genlab.nn.iaf import IAF
from genlab.nn.labels import refuse_label
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


@MODELS.register("hvae")
class HVAE(nn.Module):
    card = ModelCard(
        family="latent", default_objective="hvae-elbo", samplers=(SamplerSpec("hvae"),),
        evaluators=("hvae-elbo", "hvae-iwae", "sample-quality"),
        likelihood="bound",  # the ELBO and IWAE bounds on -log p(x)
        encoder="posterior",  # encode(x) -> the top group's Gaussian (mean, logvar), flattened
        decoder="distribution",  # decode(z_top) -> raw outputs, lower groups at their prior means
        run_defaults={"optim.lr": 1e-3},
        tiny=dict(width=8, scales=1, groups=(1, 1), latent_channels=2, iaf_steps=1, iaf_hidden=16),
    )

    @dataclass
    class Config:
        width: int = bounded(32, ge=1)  # channels of the bottom-up and top-down residual streams
        scales: int = bounded(2, ge=0)  # halvings from the image down to the top resolution (28 -> 14 -> 7)
        # Latent groups per resolution, from the top (lowest) resolution down; at most scales + 1 entries.
        groups: tuple[int, ...] = bounded((2, 2), ge=0)
        latent_channels: int = bounded(4, ge=1)  # channels of each latent group (a group is C x h x w)
        blocks: int = bounded(1, ge=0)  # residual blocks per resolution (bottom-up) and per group (top-down)
        iaf_steps: int = bounded(0, ge=0)  # IAF steps on the top group's posterior (0: Gaussian)
        iaf_hidden: int = bounded(256, ge=1)  # hidden units of each IAF step's MADE
        likelihood: str = "auto"  # auto | bernoulli | logistic | gaussian | categorical
        gaussian_sigma: float = bounded(0.1, gt=0.0)  # fixed std of the Gaussian likelihood ([0, 1] scale)
        min_logvar: float = bounded(-12.0)  # floor on every log-variance, for stability

        def validate(self):
            if not self.groups or self.groups[0] < 1:
                raise InputError("groups needs at least one latent group at the top resolution, e.g. groups=2,2")
            if len(self.groups) > self.scales + 1:
                raise InputError(f"groups has {len(self.groups)} resolutions but scales={self.scales} gives "
                                 f"{self.scales + 1}; shorten groups or raise scales")
            if self.likelihood not in ("auto", *LIKELIHOODS):
                raise InputError(f"likelihood must be one of auto, {', '.join(LIKELIHOODS)}")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        w, zc = cfg.width, cfg.latent_channels
        h0, w0 = check_divisible(data, cfg.scales)
        self.sizes = [(h0 * 2**r, w0 * 2**r) for r in range(cfg.scales + 1)]  # top (lowest) resolution first
        self.head = make_head(cfg.likelihood, data, gaussian_sigma=cfg.gaussian_sigma)
        # Bottom-up: one stored activation per resolution that holds latents.
        self.stem = nn.Conv2d(data.channels, w, 3, padding=1)
        # Resolutions below the last one with latents need no bottom-up activation: only the stem and pooling.
        self.up_blocks = nn.ModuleList(nn.Sequential(*(ResBlock(w) for _ in range(cfg.blocks)))
                                       for _ in cfg.groups)
        # Top-down: per group, the prior (from the state), the posterior (state + bottom-up), the sample's way in.
        self.start = nn.Parameter(torch.zeros(1, w, h0, w0))
        self.group_res = [r for r, n in enumerate(cfg.groups) for _ in range(n)]  # resolution index of each group
        n_groups = len(self.group_res)
        ctx = zc if cfg.iaf_steps else 0  # the top posterior also emits the IAF's context, shaped like z
        self.prior = nn.ModuleList(nn.Conv2d(w, 2 * zc, 3, padding=1) for _ in range(n_groups - 1))  # groups 1..
        self.posterior = nn.ModuleList(nn.Conv2d(2 * w, 2 * zc + (ctx if g == 0 else 0), 3, padding=1)
                                       for g in range(n_groups))
        self.z_in = nn.ModuleList(nn.Conv2d(zc, w, 1) for _ in range(n_groups))
        self.td_blocks = nn.ModuleList(nn.Sequential(*(ResBlock(w) for _ in range(cfg.blocks)))
                                       for _ in range(n_groups))
        for conv in (*self.prior, *self.posterior):  # start every group at q = p = N(0, I): no rate to shed at step 0
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.upsample = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1) for _ in range(cfg.scales))
        self.out = nn.Conv2d(w, data.channels * self.head.params_per_subpixel, 3, padding=1)
        top = zc * h0 * w0
        self.iaf = IAF(top, cfg.iaf_steps, cfg.iaf_hidden, ctx * h0 * w0) if cfg.iaf_steps else None

    @property
    def flow_posterior(self) -> bool:
        """Whether IAF steps follow the top group's Gaussian posterior (its rate is then an estimate)."""
        return self.iaf is not None

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    @property
    def group_shapes(self) -> list[tuple[int, int, int]]:
        """(C, h, w) of each latent group, top first."""
        return [(self.cfg.latent_channels, *self.sizes[r]) for r in self.group_res]

    def bottom_up(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations (B, width, h, w) per resolution that holds latents, top (lowest) first."""
        h = self.stem(x * 2 - 1)  # centre inputs on [-1, 1]
        acts = []
        for r in reversed(range(len(self.sizes))):
            if r < len(self.up_blocks):
                h = self.up_blocks[r](h)
                acts.append(h)
            if r:
                h = F.avg_pool2d(h, 2)
        return acts[::-1]

    def top_down(self, acts: list[torch.Tensor] | None, eps: list[torch.Tensor], temperatures=None,
                 given: dict[int, torch.Tensor] | None = None) -> dict:
        """One pass down the hierarchy.

        Args:
            acts: bottom-up activations (posterior pass) or None (a prior pass: sampling).
            eps: standard normal noise per group, each (B, C, h, w).
            temperatures: per group, the prior's std multiplier in a prior pass (default 1).
            given: group index -> a latent (B, C, h, w) used as is (fixes the top groups of a sample).
        Returns:
            "raw" (B, C * params, H, W) and "groups": per group a dict with the sample "z" and the
            prior "mu_p", "logvar_p" (zeros for the top group: N(0, I)); in a posterior pass also
            "mu", "logvar" of the Gaussian posterior and, for the top group with IAF, "z0" (the Gaussian
            sample) and "logdet" (log |det dz/dz0|, (B,)).
        """
        cfg, given = self.cfg, given or {}
        batch = eps[0].shape[0]
        h = self.start.expand(batch, -1, -1, -1)
        groups, res = [], 0
        for g, r in enumerate(self.group_res):
            while res < r:
                h = self._up(h, res)
                res += 1
            if g == 0:
                mu_p = torch.zeros_like(eps[0])
                logvar_p = torch.zeros_like(eps[0])
            else:
                mu_p, logvar_p = self.prior[g - 1](h).chunk(2, dim=1)
                logvar_p = logvar_p.clamp_min(cfg.min_logvar)
            out = {"mu_p": mu_p, "logvar_p": logvar_p}
            if g in given:
                z = given[g]
            elif acts is None:
                t = 1.0 if temperatures is None else temperatures[g]
                z = mu_p + torch.exp(0.5 * logvar_p) * eps[g] * t
            else:
                q = self.posterior[g](torch.cat([h, acts[r]], dim=1))
                mu_q, logvar_q = q[:, :2 * cfg.latent_channels].chunk(2, dim=1)
                logvar_q = logvar_q.clamp_min(cfg.min_logvar)
                z = mu_q + torch.exp(0.5 * logvar_q) * eps[g]
                out.update(mu=mu_q, logvar=logvar_q)
                if g == 0 and self.iaf is not None:
                    context = q[:, 2 * cfg.latent_channels:].flatten(1)
                    out["z0"] = z
                    z, out["logdet"] = self.iaf(z, context)
            out["z"] = z
            groups.append(out)
            h = self.td_blocks[g](h + self.z_in[g](z))
        while res < cfg.scales:
            h = self._up(h, res)
            res += 1
        return {"raw": self.out(F.silu(h)), "groups": groups}

    def _up(self, h: torch.Tensor, res: int) -> torch.Tensor:
        return self.upsample[res](F.interpolate(h, scale_factor=2, mode="nearest"))

    def noise(self, batch: int, device, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Standard normal noise for every group, drawn group by group (top first)."""
        return [torch.randn((batch, *s), generator=generator, device=device) for s in self.group_shapes]

    def forward(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None) -> dict:
        """A posterior pass: z ~ q(z | x) group by group, then the decoder's raw outputs."""
        eps = self.noise(x.shape[0], x.device) if eps is None else eps
        return self.top_down(self.bottom_up(x), eps)

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.build(raw)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The top group's Gaussian posterior (before any IAF steps), flattened to (B, C * h * w) each."""
        refuse_label(y, "hvae")
        acts = self.bottom_up(x)
        q = self.posterior[0](torch.cat([self.start.expand(x.shape[0], -1, -1, -1), acts[0]], dim=1))
        mu, logvar = q[:, :2 * self.cfg.latent_channels].chunk(2, dim=1)
        return mu.flatten(1), logvar.clamp_min(self.cfg.min_logvar).flatten(1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Raw outputs for a top-group latent (B, C * h * w), every lower group at its prior mean."""
        refuse_label(y, "hvae")
        z = z.view(z.shape[0], *self.group_shapes[0])
        eps = [torch.zeros((z.shape[0], *s), device=z.device, dtype=z.dtype) for s in self.group_shapes]
        return self.top_down(None, eps, given={0: z})["raw"]
