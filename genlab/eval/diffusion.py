"""The discrete-time variational bound of a diffusion model, with every term (Ho et al. 2020, eq. 5).

-log p(x_0) <= L_T + sum_{t=1}^{T-1} L_t + L_0, in the 0-based timesteps of ``genlab/nn/diffusion.py``:
L_T = KL(q(x_{T-1} | x_0) || N(0, I)), L_t = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) with one
x_t ~ q(x_t | x_0) per image and t, and L_0 = -log p(x_0 | x_1) under the discrete decoder
(2 bins for binary data, 256 for 8-bit), so the bound is in true nats of the discrete data.
All T terms are computed (no importance sampling of t, as in iDDPM's ``calc_bpd_loop``).
"""

from __future__ import annotations


import torch
from tqdm import tqdm

from genlab.card import likelihood_of
from genlab.data.base import ImageSet
from genlab.eval.metric import averaged
from genlab.eval.options import QUICK_IMAGE_CAPS
from genlab.nn import diffusion as proc
from genlab.objectives.diffusion import vlb_terms
from genlab.registry import EVALUATORS
from genlab.rng import random_subset
from genlab.stats import RunningMean, bits_per_dim


@torch.no_grad()
def variational_bound(model, x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator,
                      progress: bool = False) -> dict[str, torch.Tensor]:
    """Per-image terms of the bound in nats, each (B,): "prior" L_T, "diffusion" sum of L_t (t >= 1),
    "decoder" L_0 and their sum "total". ``x`` is in [0, 1]; ``y`` the labels of a conditional model."""
    s, levels = model.schedule, model.data.levels
    x0 = proc.to_process(x)
    B = x0.shape[0]
    variance = model.cfg.variance if model.cfg.parameterization == "ddpm" else "small"
    sigmas = s.sigmas.float().to(x0.device)
    terms = {"prior": proc.prior_kl(s, x0).flatten(1).sum(1), "diffusion": x0.new_zeros(B)}
    steps = reversed(range(s.T))
    for i in (tqdm(steps, total=s.T, desc="bound", unit="t", leave=False, disable=None) if progress else steps):
        t = torch.full((B,), i, device=x0.device, dtype=torch.long)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        xt = proc.q_sample(s, x0, t, noise)
        abar = proc.at(s.abar, t, xt)
        x0_hat, frac = model.denoise(xt / abar.sqrt(), sigmas[i].expand(B), y, t.float())
        term = vlb_terms(s, proc.p_from_x0(s, x0_hat, xt, t, variance, frac), x0, xt, t, levels)
        if i == 0:
            terms["decoder"] = term
        else:
            terms["diffusion"] += term
    terms["total"] = terms["prior"] + terms["diffusion"] + terms["decoder"]
    return terms


# The quick protocol's cap: the bound costs T network passes per batch of images, so a CPU evaluation of
# 1,000 images would take hours; 32 images (one CPU batch) take about 3-5 minutes at T = 1000.
QUICK_MAX_IMAGES = QUICK_IMAGE_CAPS["diffusion-bound"]


def score_subset(model, test: ImageSet, device, opts, cap: int, score, keys) -> tuple[dict, str]:
    """Run ``score(model, x, y, noise_generator) -> {key: (B,)}`` on a seeded random subset of
    ``opts.max_examples`` test images (None: all; at most ``cap`` under the quick protocol, said in the
    returned text). Returns ({key: RunningMean}, a description of the subset for the protocol)."""
    n_all = len(test)
    n = n_all if opts.max_examples is None else min(n_all, opts.max_examples)
    capped = opts.protocol == "quick" and n > cap
    n = cap if capped else n
    order = torch.arange(n_all) if n == n_all else random_subset(n_all, n, opts.seed)
    noise_gen = torch.Generator(device=device).manual_seed(opts.seed)
    binarize_gen = torch.Generator(device=test.images.device).manual_seed(opts.seed)
    y_needed = model.cfg.conditional
    acc = {k: RunningMean() for k in keys}
    for start in range(0, n, opts.batch_size):
        idx = order[start:start + opts.batch_size]
        batch = {k: v.to(device) for k, v in test.batch(idx.to(test.images.device), binarize_gen).items()}
        terms = score(model, batch["x"], batch.get("y") if y_needed else None, noise_gen)
        for k, a in acc.items():
            a.add(terms[k])
    subset = "all images" if n == n_all else f"random subset of {n} of {n_all} (seed {opts.seed})"
    if capped:
        subset += f"; the quick protocol caps this estimator at {cap} images (--max-examples N sets more)"
    return acc, subset


@EVALUATORS.register("diffusion-bound")
@torch.no_grad()
def evaluate_bound(model, objective, test: ImageSet, device, opts) -> dict:
    """The bound on a seeded random subset of ``opts.max_examples`` test images (None: all; at most
    ``QUICK_MAX_IMAGES`` under the quick protocol, said in the protocol): T network calls per batch."""
    acc, subset = score_subset(model, test, device, opts, QUICK_MAX_IMAGES,
                               lambda m, x, y, g: variational_bound(m, x, y, g, progress=True),
                               ("prior", "diffusion", "decoder", "total"))
    of = likelihood_of(model)
    proto = (f"{test.name}/{test.split}, {subset}; discrete-time variational bound on -log {of}, all "
             f"{model.schedule.T} terms, one x_t per image and t (seed {opts.seed}), "
             f"{'Bernoulli (2-bin)' if test.spec.bits == 1 else '256-bin'} discretized Gaussian decoder")
    bpd = bits_per_dim(1.0, test.spec.dims)
    return {
        "bound_nll": averaged(acc["total"], "nats/image", "bound", proto, of=of),
        "bound_bpd": averaged(acc["total"], "bits/dim", "bound", proto, scale=bpd, of=of),
        "bound_prior": averaged(acc["prior"], "nats/image", "exact", proto + "; the L_T term"),
        "bound_diffusion": averaged(acc["diffusion"], "nats/image", "estimate", proto + "; sum of L_1..L_{T-1}"),
        "bound_decoder": averaged(acc["decoder"], "nats/image", "estimate", proto + "; the L_0 term"),
    }
