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

Class-conditional (``model.conditional=true``; the conditional VAE of Sohn, Lee & Yan 2015,
"Learning Structured Output Representation using Deep Conditional Generative Models", and
the M2 generative model of Kingma et al. 2014, arXiv:1406.5298): the one-hot label y enters
the encoder beside its features, q(z | x, y), and the decoder beside z, p(x | z, y), with
the prior p(z) = N(0, I) shared by every class. The ELBO and IWAE bounds are then bounds on
-log p(x | y), which Bayes' rule turns into a classifier (`genlab classify`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.card import ConditioningSpec, FeatureSpec, ModelCard, SamplerSpec
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
        conditioning=ConditioningSpec(class_label="config"),  # model.conditional=true: q(z | x, y), p(x | z, y)
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
        conditional: bool = False  # one-hot label into the encoder and the decoder: bounds on -log p(x | y)

        def validate(self):
            super().validate()
            if not self.min_logvar < self.max_logvar:
                raise InputError("model.min_logvar must be below model.max_logvar")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        if cfg.conditional and data.num_classes < 2:
            raise InputError("model.conditional=true needs a labelled dataset with at least two classes")
        context = cfg.iaf_context if cfg.iaf_steps else 0
        self.classes = data.num_classes if cfg.conditional else 0
        self.head, self.encoder, self.decoder = build_codec(cfg, data, code_dim=2 * cfg.latent_dim + context,
                                                            label_dim=self.classes)
        self.iaf = IAF(cfg.latent_dim, cfg.iaf_steps, cfg.iaf_hidden, context) if cfg.iaf_steps else None

    @property
    def flow_posterior(self) -> bool:
        """Whether IAF steps follow the Gaussian posterior: then its KL is a one-sample estimate and
        the IWAE proposal draws nothing from the prior (the evaluators read this)."""
        return self.iaf is not None

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def label_code(self, y: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """The one-hot (B, classes) code of the labels of a conditional VAE; None for an unconditional one."""
        if not self.classes:
            if y is not None:
                raise InputError("this VAE is unconditional: it takes no label (train it with model.conditional=true)")
            return None
        if y is None:
            raise InputError("this VAE is class-conditional (model.conditional=true): its posterior q(z | x, y) and "
                             "decoder p(x | z, y) need the label y of every image")
        if y.shape != (batch,):
            raise InputError(f"give one label per image: {batch} images, labels of shape {tuple(y.shape)}")
        return F.one_hot(y.long(), self.classes).float()

    def posterior_params(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's output (B, 2 * latent_dim [+ iaf_context]): everything q(z|x[, y]) needs."""
        return self.encoder(x, self.label_code(y, x.shape[0]))

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

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussian of q(z|x[, y]) = N(mu, diag(exp(logvar))) (before any IAF steps); each (B, latent_dim)."""
        out = self.reparameterize(self.posterior_params(x, y), torch.zeros(x.shape[0], self.cfg.latent_dim,
                                                                           device=x.device, dtype=x.dtype))
        return out["mu"], out["logvar"]

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Raw likelihood parameters (B, C * params, H, W) of p(x | z[, y]), each within +-max_abs_raw."""
        code = self.label_code(y, z.shape[0])
        if code is not None:
            z = torch.cat([z, code.to(z.dtype)], dim=1)
        return self.decoder(z).clamp(-self.cfg.max_abs_raw, self.cfg.max_abs_raw)

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.build(raw)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, y: torch.Tensor | None = None) -> dict:
        """One reparameterized pass: z = mu + sigma * eps (then the IAF steps), and the decoder's raw outputs."""
        params = self.posterior_params(x, y)
        eps = torch.randn(x.shape[0], self.cfg.latent_dim, device=x.device, dtype=params.dtype) if noise is None \
            else noise
        out = self.reparameterize(params, eps)
        out["raw"] = self.decode(out["z"], y)
        return out
