"""Per-image NLL and per-pixel surprise of a trained model, one entry per model family.

``FAMILY_LIKELIHOODS`` maps the model card's ``family`` to a class that knows how that
family gives a number per image:

* "latent": a VAE's IWAE bound, -log p(x) <= -log (1/k) sum_i p(x, z_i)/q(z_i|x)
  (Burda et al. 2016, arXiv:1509.00519), kind "bound"; an autoencoder has no
  prior, so it gets its reconstruction NLL -log p(x | z = encoder(x)), kind
  "proxy" (not a likelihood, labelled so everywhere).
* "autoregressive": the exact chain-rule NLL from the objective's per-example
  ``nll_nats`` term, kind "exact"; a class-conditional model is marginalized over
  its classes with a uniform prior, log p(x) = logsumexp_y log p(x|y) - log K.
* "diffusion": the VDM continuous-time bound (Kingma et al. 2021), kind "bound": 16 network
  calls per image instead of the discrete bound's T = 1000, so a test set is affordable; a
  class-conditional model's per-class bounds B_k >= -log p(x|k) give -log p(x) <=
  -log (1/K) sum_k exp(-B_k), still a bound.

A later family plugs in by registering a class with the same three members
(``kind``, ``describe()``, ``nll(x, generator)``, ``pixel_nll(x)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.card import conditioning
from genlab.config import bounded, check_fields
from genlab.errors import InputError
from genlab.eval.diffusion_continuous import VDM_TIMES, vdm_bound
from genlab.eval.exact import class_conditional_nlls, marginal_nll, objective_nll
from genlab.eval.hierarchical import iwae_bound_of
from genlab.eval.latent import PRIOR_FRACTION, iwae_log_likelihood, iwae_prior_samples
from genlab.eval.surprise import pixel_nll
from genlab.objectives.latent import decoder_distribution
from genlab.registry import Registry
from genlab.sampling.latent import latent_means

# Diffusion surprise maps: noise levels per image and the seed of their noise.
PIXEL_MAP_TIMES, PIXEL_MAP_SEED = 64, 0

FAMILY_LIKELIHOODS: Registry[type] = Registry("likelihood family")


@dataclass
class LikelihoodOptions:
    iwae_k: int = bounded(100, ge=1)  # importance samples per image for a VAE's bound
    iwae_chunk: int = bounded(100, ge=1)  # importance samples per decoder pass (memory bound)


def per_label_common_noise(nll_at, n: int, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(K, n): ``nll_at(y)`` for y = labels[k] repeated n times, every label starting from the same generator
    state (common random numbers): a bound's noise then cancels in the differences between labels, which is
    what Bayes' rule reads, instead of blurring them."""
    state, out = generator.get_state(), []
    for label in labels.tolist():
        generator.set_state(state)
        out.append(nll_at(torch.full((n,), label, dtype=torch.long, device=labels.device)))
    return torch.stack(out)


class FamilyLikelihood:
    """Interface: what a family's model says about each image, in nats."""

    kind: str = "exact"  # "exact" | "bound" | "proxy"
    pixel_map_name: str = "-log p(x_ij | x_<ij), exact"  # what pixel_nll returns, for captions

    def __init__(self, model, objective, opts: LikelihoodOptions):
        self.model, self.objective, self.opts = model, objective, opts
        self.classes = conditioning(model).num_classes  # > 0: -log p(x) is marginalized over the classes

    def describe(self) -> str:
        """One line saying how the per-image NLL is computed."""
        raise NotImplementedError

    def nll(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, C, H, W) model input -> (B,) NLL in nats per image."""
        raise NotImplementedError

    def pixel_nll(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) model input -> (B, H, W) per-pixel NLL in nats, summed over channels."""
        raise NotImplementedError

    def _refuse_class_conditional_map(self) -> None:
        if self.classes:
            raise InputError("the per-pixel map of a class-conditional model depends on the class; "
                             "score it with an unconditional run")


@FAMILY_LIKELIHOODS.register("latent")
class LatentLikelihood(FamilyLikelihood):
    """VAE: the IWAE bound; autoencoder: reconstruction NLL at its code (a proxy, not a likelihood)."""

    def __init__(self, model, objective, opts: LikelihoodOptions):
        super().__init__(model, objective, opts)
        check_fields(opts)
        # A VAE's encoder returns the posterior (mu, logvar); an autoencoder's a code.
        self.variational = model.card.encoder == "posterior"
        self.kind = "bound" if self.variational else "proxy"
        self.pixel_map_name = ("-log p(x_ij | z) at the posterior mean z = E[z|x] (a reconstruction "
                               "term, not the image's NLL)" if self.variational else
                               "-log p(x_ij | z) at the code z = encoder(x)")

    def describe(self) -> str:
        if self.variational:
            vae = iwae_bound_of(self.model) is iwae_log_likelihood  # hvae: the encoder alone proposes
            m = iwae_prior_samples(self.model, self.opts.iwae_k, PRIOR_FRACTION) if vae else 0
            proposal = f"{m} of them from the prior: a defensive mixture proposal" if m else "proposal: the encoder"
            text = (f"IWAE upper bound on -log p(x) (Burda et al. 2016), k={self.opts.iwae_k} importance "
                    f"samples per image ({proposal})")
            if self.classes:
                text += (f", -log p(x) marginalized over {self.classes} classes with a uniform prior "
                         "(each class's bound, not -log p(x | y))")
            return text
        return "reconstruction NLL -log p(x | z = encoder(x)) of an autoencoder: not a likelihood (no prior)"

    @torch.no_grad()
    def nll(self, x, generator):
        if not self.variational:
            return self.pixel_nll(x).flatten(1).sum(1)
        if not self.classes:
            return -iwae_bound_of(self.model)(self.model, x, self.opts.iwae_k, self.opts.iwae_chunk, generator)
        return marginal_nll(self.class_nlls(x, torch.arange(self.classes, device=x.device), generator))

    @torch.no_grad()
    def class_nlls(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(K, B) IWAE bounds on -log p(x | y = labels[k]) of a conditional VAE. Every label sees the same
        noise draws (common random numbers), so the differences between labels are not blurred by them."""
        return per_label_common_noise(lambda y: self.nll_given(x, y, generator), x.shape[0], labels.to(x.device),
                                      generator)

    @torch.no_grad()
    def nll_given(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B,) IWAE bounds on -log p(x | y) of a conditional VAE, at the (B,) labels y."""
        return -iwae_log_likelihood(self.model, x, self.opts.iwae_k, self.opts.iwae_chunk, generator, PRIOR_FRACTION, y)

    @torch.no_grad()
    def pixel_nll(self, x):
        self._refuse_class_conditional_map()
        return -decoder_distribution(self.model, x, latent_means(self.model, x)).log_prob(x).sum(1)


@FAMILY_LIKELIHOODS.register("autoregressive")
class AutoregressiveLikelihood(FamilyLikelihood):
    """Exact NLL from the objective's per-example "nll_nats"; per-pixel conditionals for the map."""

    kind = "exact"

    def describe(self) -> str:
        text = "exact chain-rule NLL (objective term nll_nats)"
        if self.classes:
            text += (f", -log p(x) marginalized over {self.classes} classes with a uniform prior "
                     "(not -log p(x | y))")
        return text

    @torch.no_grad()
    def nll(self, x, generator):
        if not self.classes:
            return objective_nll(self.model, self.objective, {"x": x})
        return marginal_nll(class_conditional_nlls(self.model, self.objective, x, self.classes))

    @torch.no_grad()
    def pixel_nll(self, x):
        self._refuse_class_conditional_map()
        return pixel_nll(self.model, x)


@FAMILY_LIKELIHOODS.register("diffusion")
class DiffusionLikelihood(FamilyLikelihood):
    """The VDM bound of the run's network (``eval/diffusion_continuous.py::vdm_bound``), per image."""

    kind = "bound"
    pixel_map_name = "the VDM bound's nats spent on each pixel (its terms summed per pixel; they add up to the bound)"

    def describe(self) -> str:
        text = (f"VDM continuous-time upper bound on -log p(x) (Kingma et al. 2021): {VDM_TIMES} stratified noise "
                "levels per image, plus the discrete prior KL and decoder")
        if self.classes:
            text += f"; -log p(x) <= -log mean_k exp(-bound(x | k)) over {self.classes} classes (uniform prior)"
        return text

    @torch.no_grad()
    def nll(self, x, generator):
        # x is the model input in [0, 1]; vdm_bound maps it to the process scale itself.
        if not self.classes:
            return vdm_bound(self.model, x, None, generator)["total"].float()
        per_class = torch.stack([vdm_bound(self.model, x, torch.full((x.shape[0],), k, device=x.device), generator)
                                 ["total"].float() for k in range(self.classes)])
        return marginal_nll(per_class)

    @torch.no_grad()
    def pixel_nll(self, x):
        self._refuse_class_conditional_map()
        # Every term of the VDM bound is a sum over pixels, so its map adds up to the image's bound.
        # More noise levels than the per-image score (a map is a few images, and each pixel's share
        # is a noisier average than their sum); a fixed seed makes the same image give the same map.
        generator = torch.Generator(device=x.device).manual_seed(PIXEL_MAP_SEED)
        return vdm_bound(self.model, x, None, generator, PIXEL_MAP_TIMES, per_dim=True)["total"].sum(1).float()


def family_likelihood(model, objective, opts: LikelihoodOptions | None = None) -> FamilyLikelihood:
    """The likelihood of ``model`` as its family defines it; an error naming the families that have one."""
    family = model.card.family
    if family not in FAMILY_LIKELIHOODS:
        raise InputError(f"{type(model).__name__} (family {family!r}) gives no per-image likelihood; OOD scores "
                         f"need a model of family {', '.join(FAMILY_LIKELIHOODS.names())}")
    return FAMILY_LIKELIHOODS.get(family)(model, objective, opts or LikelihoodOptions())
