"""Variational autoencoder.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes" (arXiv:1312.6114);
Rezende, Mohamed & Wierstra 2014, "Stochastic Backpropagation and Approximate
Inference in Deep Generative Models" (arXiv:1401.4082).

Differences from the papers: convolutional encoder and decoder with residual
blocks (the papers use MLPs); the decoder upsamples then convolves; the pixel
likelihood is a discrete distribution (Bernoulli, discretized logistic or
discretized fixed-variance Gaussian) so the bound is in true nats. Optional
inverse autoregressive flow posterior (Kingma et al. 2016, arXiv:1606.04934;
model.iaf_steps > 0, genlab/nn/iaf.py): the rate is then a one-sample estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.card import FeatureSpec, ModelCard, SamplerSpec
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.conv import CodecConfig, build_codec
from genlab.nn.distributions import PixelDistribution
from genlab.nn.iaf import IAF
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


@MODELS.register("vae")
class VAE(nn.Module):
    card = ModelCard(
        family="latent", default_objective="elbo", samplers=(SamplerSpec("latent"),),
        evaluators=("elbo", "iwae", "reconstruction", "sample-quality", "memorization"),
        likelihood="bound",  # the ELBO and IWAE bounds on -log p(x)
        encoder="posterior",  # encode(x) -> (mean, logvar)
        features=FeatureSpec("posterior-mean"),  # `genlab probe` reads the posterior means
        run_defaults={"optim.lr": 1e-3},
        tiny=dict(latent_dim=3, channels=(8, 16), hidden=32),
        decoder="distribution",  # decode(z) -> raw outputs; distribution(raw).mean() is the image
    )

    @dataclass
    class Config(CodecConfig):
        min_logvar: float = bounded(-12.0)  # floor on the posterior log-variance, for stability
        # A posterior wider than the N(0, I) prior never helps the bound; std <= e on outliers.
        max_logvar: float = bounded(2.0)
        max_abs_mean: float = bounded(10.0, gt=0)  # posterior means beyond 10 prior std cost >= 50 nats of KL each
        max_abs_raw: float = bounded(30.0, gt=0)  # decoder outputs (logits, locations, log-scales): >= -30 nats/pixel
        iaf_steps: int = bounded(0, ge=0)  # inverse autoregressive flow steps on the posterior sample (0: Gaussian)
        iaf_hidden: int = bounded(256, ge=1)  # hidden units of each IAF step's MADE
        iaf_context: int = bounded(32, ge=1)  # size of the context vector the encoder hands the IAF steps

        def validate(self):
            super().validate()
            if not self.min_logvar < self.max_logvar:
                raise InputError("model.min_logvar must be below model.max_logvar")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        context = cfg.iaf_context if cfg.iaf_steps else 0
        self.head, self.encoder, self.decoder = build_codec(cfg, data, code_dim=2 * cfg.latent_dim + context)
        self.iaf = IAF(cfg.latent_dim, cfg.iaf_steps, cfg.iaf_hidden, context) if cfg.iaf_steps else None

    @property
    def flow_posterior(self) -> bool:
        """Whether IAF steps follow the Gaussian posterior: then its KL is a one-sample estimate and
        the IWAE proposal draws nothing from the prior (the evaluators read this)."""
        return self.iaf is not None

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def posterior_params(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output (B, 2 * latent_dim [+ iaf_context]): everything q(z|x) needs."""
        return self.encoder(x)

    def reparameterize(self, params: torch.Tensor, eps: torch.Tensor) -> dict:
        """z = mu + sigma * eps, then the IAF steps if any.

        Returns "mu", "logvar" (B, latent_dim) of the Gaussian, within the configured bounds, the sample
        "z" and, with IAF steps, "z0" (the Gaussian sample) and "logdet" (log |det dz/dz0|, (B,)).
        """
        c, L = self.cfg, self.cfg.latent_dim
        mu, logvar = params[:, :2 * L].chunk(2, dim=1)
        mu, logvar = mu.clamp(-c.max_abs_mean, c.max_abs_mean), logvar.clamp(c.min_logvar, c.max_logvar)
        z = mu + torch.exp(0.5 * logvar) * eps
        out = {"mu": mu, "logvar": logvar, "z": z}
        if self.iaf is not None:
            out["z0"] = z
            out["z"], out["logdet"] = self.iaf(z, params[:, 2 * L:])
        return out

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussian of q(z|x) = N(mu, diag(exp(logvar))) (before any IAF steps); each (B, latent_dim)."""
        out = self.reparameterize(self.posterior_params(x), torch.zeros(x.shape[0], self.cfg.latent_dim,
                                                                        device=x.device, dtype=x.dtype))
        return out["mu"], out["logvar"]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw likelihood parameters (B, C * params, H, W), each within +-max_abs_raw."""
        return self.decoder(z).clamp(-self.cfg.max_abs_raw, self.cfg.max_abs_raw)

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.build(raw)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict:
        """One reparameterized pass: z = mu + sigma * eps (then the IAF steps), and the decoder's raw outputs."""
        params = self.posterior_params(x)
        eps = torch.randn(x.shape[0], self.cfg.latent_dim, device=x.device, dtype=params.dtype) if noise is None \
            else noise
        out = self.reparameterize(params, eps)
        out["raw"] = self.decode(out["z"])
        return out
