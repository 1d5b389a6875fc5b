"""The adversarial objective: one class, every GAN loss and gradient penalty.

Losses, as functions of the discriminator's raw output (a logit for the
logistic losses, a critic value otherwise), per example; r = D(real), f = D(fake):

=============  ==================================  =====================  =======================
loss           discriminator minimizes             generator minimizes    encoder (BiGAN) minimizes
=============  ==================================  =====================  =======================
minimax        -log s(r) - log(1 - s(f))           log(1 - s(f))          log s(r)
nonsaturating  (same as minimax)                   -log s(f)              -log(1 - s(r))
lsgan          (r - 1)^2 / 2 + f^2 / 2             (f - 1)^2 / 2          r^2 / 2
hinge          max(0, 1 - r) + max(0, 1 + f)       -f                     r
wasserstein    f - r                               -f                     r
=============  ==================================  =====================  =======================

with s the logistic sigmoid, computed stably: -log s(t) = softplus(-t),
-log(1 - s(t)) = softplus(t). References: minimax and non-saturating,
Goodfellow et al. 2014 (arXiv:1406.2661, Sec. 3); least squares with targets
a=0, b=c=1, Mao et al. 2017 (arXiv:1611.04076); hinge, Lim & Ye 2017
(arXiv:1705.02894) and Miyato et al. 2018 (arXiv:1802.05957); Wasserstein,
Arjovsky et al. 2017 (arXiv:1701.07875). The encoder column is the
generator's game played from the data side (ALI/BiGAN: E wants (x, E(x)) to
look generated); for the non-saturating loss it swaps the labels, and for
hinge it is the raw score as in BigBiGAN (Donahue & Simonyan 2019).

Penalties on the discriminator (added in phase D only):

* ``r1``: (gamma / 2) ||grad_x D(x)||^2 at real data (Mescheder et al. 2018,
  arXiv:1801.04406, Sec. 4.1), ``penalty_weight`` = gamma;
* ``wgan-gp``: lambda (||grad D(x_hat)||_2 - 1)^2 at x_hat = e x + (1 - e) G(z),
  e ~ U[0, 1] drawn once per example (Gulrajani et al. 2017,
  arXiv:1704.00028, Algorithm 1), ``penalty_weight`` = lambda;
* ``drift`` (with any penalty or none): eps_drift D(x)^2 at real data, which keeps
  a Wasserstein critic's scores from drifting far from 0 (Karras et al. 2018,
  arXiv:1710.10196, Sec. A.1: eps_drift = 0.001).

For BiGAN the discriminator's input is the pair (x, z) and the gradient is
taken with respect to both. Penalties need per-example gradients, which batch
norm in the discriminator would mix across the batch, so that combination is
an error.

Model protocol. The objective never looks inside a model; every adversarial
model provides:

* ``phases()`` naming phases "D" and "G";
* ``sample_latent(n, device) -> (n, latent_dim)`` from p(z);
* ``real_inputs(batch) -> tuple`` what D sees of a data example ((x,), or (x, E(x)));
* ``fake_inputs(batch, z) -> tuple`` what D sees of a generated one ((G(z),), or (G(z), z));
* ``critic(inputs, batch) -> (B,)`` D's raw score (labels, if any, come from ``batch``);
* a phase named "D" whose ``modules`` are the discriminator's submodules (``discriminator_of``
  reads them from ``phases()``; the penalty and Lipschitz checks look at exactly those).

Gradient routing per phase (the trainer zeroes every gradient, back-propagates
``loss.mean()`` and steps only the phase's optimizer): in phase D the fake
(and BiGAN's E(x)) are computed without a graph, so G and E get no gradient;
in phase G the discriminator's parameters receive gradients that its
optimizer never applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.spec import DataSpec
from genlab.registry import OBJECTIVES

Loss = Literal["minimax", "nonsaturating", "lsgan", "hinge", "wasserstein"]
Penalty = Literal["none", "r1", "wgan-gp"]
LOGISTIC = ("minimax", "nonsaturating")


# ----------------------------------------------------------------------------------------------
# Pure loss functions of discriminator outputs: (B,) -> (B,)


def discriminator_loss(loss: Loss, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """What D minimizes, per example, given its raw outputs on a real and a fake example."""
    if loss in LOGISTIC:
        return F.softplus(-real) + F.softplus(fake)  # -log s(r) - log(1 - s(f))
    if loss == "lsgan":
        return 0.5 * (real - 1).pow(2) + 0.5 * fake.pow(2)
    if loss == "hinge":
        return F.relu(1 - real) + F.relu(1 + fake)
    if loss == "wasserstein":
        return fake - real
    raise InputError(f"unknown GAN loss {loss!r}")


def generator_loss(loss: Loss, fake: torch.Tensor) -> torch.Tensor:
    """What G minimizes, per example, given D's raw output on its sample."""
    if loss == "minimax":
        return -F.softplus(fake)  # log(1 - s(f)): saturates (gradient -> 0) when s(f) -> 0
    if loss == "nonsaturating":
        return F.softplus(-fake)  # -log s(f)
    if loss == "lsgan":
        return 0.5 * (fake - 1).pow(2)
    if loss in ("hinge", "wasserstein"):
        return -fake
    raise InputError(f"unknown GAN loss {loss!r}")


def encoder_loss(loss: Loss, real: torch.Tensor) -> torch.Tensor:
    """What a BiGAN/ALI encoder minimizes, per example, given D's raw output on (x, E(x))."""
    if loss == "minimax":
        return -F.softplus(-real)  # log s(r): the encoder maximizes D's loss on data pairs
    if loss == "nonsaturating":
        return F.softplus(real)  # -log(1 - s(r)): labels swapped
    if loss == "lsgan":
        return 0.5 * real.pow(2)  # push data pairs to the fake target a = 0
    if loss in ("hinge", "wasserstein"):
        return real
    raise InputError(f"unknown GAN loss {loss!r}")


# ----------------------------------------------------------------------------------------------
# Gradient penalties


def interpolation_weights(batch_size: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """e ~ U[0, 1], one per example (B,): WGAN-GP mixes whole examples, not pixels."""
    return torch.rand(batch_size, device=device, generator=generator)


def interpolate(real: tuple[torch.Tensor, ...], fake: tuple[torch.Tensor, ...],
                weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """e_i * real_i + (1 - e_i) * fake_i for every tensor of the inputs, e of shape (B,)."""
    out = []
    for r, f in zip(real, fake):
        e = weight.view(-1, *([1] * (r.dim() - 1))).to(r.dtype)
        out.append(e * r + (1 - e) * f)
    return tuple(out)


def input_gradient_norm(critic, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """||d critic(inputs)_i / d inputs_i||_2 per example (B,), differentiable (create_graph).

    The gradient of the summed scores gives per-example gradients only if example i's
    score depends on example i alone, which is why batch norm in D is refused with penalties.
    """
    # Under no_grad (an evaluation pass) the penalty is still computed, without a graph to D's weights.
    differentiable = torch.is_grad_enabled()
    with torch.enable_grad():
        inputs = tuple(t.detach().requires_grad_(True) for t in inputs)
        scores = critic(inputs)
        grads = torch.autograd.grad(scores.sum(), inputs, create_graph=differentiable)
    sq = sum(g.flatten(1).pow(2).sum(1) for g in grads)
    return sq.add(1e-12).sqrt()  # epsilon keeps the gradient of sqrt finite at 0


def r1_penalty(grad_norm: torch.Tensor, gamma: float) -> torch.Tensor:
    """(gamma / 2) ||grad D||^2 per example (Mescheder et al. 2018)."""
    return 0.5 * gamma * grad_norm.pow(2)


def wgan_gp_penalty(grad_norm: torch.Tensor, lam: float) -> torch.Tensor:
    """lambda (||grad D|| - 1)^2 per example (Gulrajani et al. 2017)."""
    return lam * (grad_norm - 1).pow(2)


def discriminator_of(model) -> nn.ModuleList:
    """The discriminator's networks: the submodules the model's "D" phase trains, as declared in ``phases()``.

    GAN models (and the toy GANs of genlab.toy, which have no card) declare their two players in
    ``phases()`` for the trainer anyway; the objective reads the same declaration, so there is one
    statement of which networks form the discriminator.
    """
    phases = model.phases()
    d = next((p for p in phases if p.name == "D"), None)
    if d is None or not d.modules:
        raise InputError(f"the gan objective needs a model whose phases() include Phase('D', (discriminator "
                         f"submodules...)); {type(model).__name__} declares {[p.name for p in phases]}")
    return nn.ModuleList(model.get_submodule(name) for name in d.modules)


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _has_spectral_norm(module: nn.Module) -> bool:
    return any(hasattr(m, "parametrizations") and "weight" in m.parametrizations for m in module.modules())


@OBJECTIVES.register("gan")
class GAN:
    """The adversarial game of Goodfellow et al. 2014 and its variants; see the module docstring.

    Returned terms, each (B,):
        loss: what the phase's player minimizes (plus the penalty in phase D).
        d_real, d_fake: the discriminator's raw outputs on real and generated examples
            (logits for the logistic losses).
        p_real, p_fake: sigmoid of those logits, D's probability of "real" (logistic losses).
        value: log s(r) + log(1 - s(f)), the per-example value of the minimax game
            (logistic losses, phase D); its mean tends to 2 JSD(p_data, p_g) - log 4
            when D is optimal (Goodfellow et al. 2014, Proposition 1 and Theorem 1).
        input_grad_norm, penalty: ||grad_inputs D|| where the penalty is taken, and the weighted
            penalty (phase D with a penalty; named apart from the trainer's parameter "grad_norm").
        drift: eps_drift D(x_real)^2 (phase D, when drift > 0).
    """

    @dataclass
    class Config:
        loss: Loss = "nonsaturating"  # minimax | nonsaturating | lsgan | hinge | wasserstein
        penalty: Penalty = "none"  # none | r1 (on reals) | wgan-gp (on interpolates)
        penalty_weight: float = bounded(10.0, ge=0.0)  # gamma of R1 / lambda of WGAN-GP (WGAN-GP paper: 10)
        # eps_drift D(x_real)^2 added to D's loss, keeping a Wasserstein critic near 0 (Karras et al. 2018: 0.001)
        drift: float = bounded(0.0, ge=0.0)

        def validate(self):
            if self.penalty_weight < 0 or not math.isfinite(self.penalty_weight):
                raise InputError("penalty_weight must be a finite number >= 0")

    def __init__(self, cfg: Config | None = None, data: DataSpec | None = None):
        self.cfg = cfg if cfg is not None else self.Config()
        self.cfg.validate()
        self.data = data

    def _check(self, model) -> None:
        d = discriminator_of(model)
        if self.cfg.penalty != "none" and _has_batch_norm(d):
            raise InputError(
                f"penalty={self.cfg.penalty} needs per-example input gradients, but the discriminator uses "
                "batch norm, which mixes examples: set model.d_norm=layer (or spectral or none)")
        if self.cfg.loss == "wasserstein" and self.cfg.penalty == "none" and not _has_spectral_norm(d):
            raise InputError(
                "loss=wasserstein needs a Lipschitz critic, or its scores diverge: set penalty=wgan-gp "
                "(and model.d_norm=layer), or model.d_norm=spectral")

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        self._check(model)
        if phase == "D":
            return self._discriminator_terms(model, batch)
        if phase == "G":
            return self._generator_terms(model, batch)
        raise InputError(f"the gan objective has phases 'D' and 'G', not {phase!r}")

    def _scores(self, real: torch.Tensor | None, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"d_fake": fake.detach()}
        if real is not None:
            out["d_real"] = real.detach()
        if self.cfg.loss in LOGISTIC:
            out["p_fake"] = torch.sigmoid(fake.detach())
            if real is not None:
                out["p_real"] = torch.sigmoid(real.detach())
        return out

    def _discriminator_terms(self, model, batch: dict) -> dict[str, torch.Tensor]:
        x = batch["x"]
        n = x.shape[0]
        z = model.sample_latent(n, x.device)
        # No graph through G (or E): this phase's backward must reach D's parameters only.
        with torch.no_grad():
            real_in = model.real_inputs(batch)
            fake_in = model.fake_inputs(batch, z)
        real = model.critic(real_in, batch)  # (B,)
        fake = model.critic(fake_in, batch)  # (B,)
        loss = discriminator_loss(self.cfg.loss, real, fake)
        terms = self._scores(real, fake)
        if self.cfg.loss in LOGISTIC:
            terms["value"] = -loss.detach()
        if self.cfg.penalty != "none":
            def critic(inputs):
                return model.critic(inputs, batch)

            if self.cfg.penalty == "r1":
                grad_norm = input_gradient_norm(critic, real_in)
                penalty = r1_penalty(grad_norm, self.cfg.penalty_weight)
            else:
                points = interpolate(real_in, fake_in, interpolation_weights(n, x.device))
                grad_norm = input_gradient_norm(critic, points)
                penalty = wgan_gp_penalty(grad_norm, self.cfg.penalty_weight)
            loss = loss + penalty
            terms["input_grad_norm"] = grad_norm.detach()
            terms["penalty"] = penalty.detach()
        if self.cfg.drift > 0:
            drift = self.cfg.drift * real.pow(2)
            loss = loss + drift
            terms["drift"] = drift.detach()
        return {"loss": loss, **terms}

    def _generator_terms(self, model, batch: dict) -> dict[str, torch.Tensor]:
        x = batch["x"]
        z = model.sample_latent(x.shape[0], x.device)
        fake = model.critic(model.fake_inputs(batch, z), batch)
        loss = generator_loss(self.cfg.loss, fake)
        real = None
        real_in = model.real_inputs(batch)
        # D's view of data matters in this phase only when it holds more than the batch itself,
        # i.e. the output of a G-phase player (BiGAN's E(x)); plain images cannot move G.
        if any(t is not x for t in real_in):
            real = model.critic(real_in, batch)
            loss = loss + encoder_loss(self.cfg.loss, real)
        return {"loss": loss, **self._scores(real, fake)}
