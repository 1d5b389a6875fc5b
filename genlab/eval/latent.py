"""Likelihood bounds and reconstruction error of latent-variable models."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from genlab.data.base import ImageSet
from genlab.eval.metric import averaged, metric
from genlab.objectives.latent import gaussian_kl, gaussian_log_density, per_dim
from genlab.registry import EVALUATORS
from genlab.sampling.latent import reconstruct
from genlab.stats import RunningMean


def _batches(data: ImageSet, opts, device, desc: str | None = None):
    n = len(data) if opts.max_examples is None else min(len(data), opts.max_examples)
    # The binarized-MNIST test file is sorted by digit: a prefix would be biased, so subsets are random.
    g = torch.Generator().manual_seed(opts.seed)
    order = torch.arange(len(data)) if n == len(data) else torch.randperm(len(data), generator=g)[:n]
    starts = range(0, n, opts.batch_size)
    for start in (tqdm(starts, desc=desc, unit="batch", leave=False) if desc else starts):
        idx = order[start:start + opts.batch_size]
        yield {k: v.to(device) for k, v in data.batch(idx).items()}


def _protocol(data: ImageSet, n: int, extra: str = "") -> str:
    what = f"{data.name}/{data.split}, {n} images" + (f" ({data.note})" if data.note else "")
    return f"{what}{'; ' + extra if extra else ''}"


def _bits_per_dim(data: ImageSet) -> float:
    """Bits per dimension in one nat per image."""
    return per_dim(torch.tensor(1.0, dtype=torch.float64), data.spec).item()


def _count(data, opts) -> int:
    return len(data) if opts.max_examples is None else min(len(data), opts.max_examples)


@torch.no_grad()
def iwae_log_likelihood(model, x: torch.Tensor, k: int, chunk: int, generator: torch.Generator) -> torch.Tensor:
    """log p(x) >= log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z|x) (Burda et al. 2016, arXiv:1509.00519).

    Returns (B,) lower bounds in nats; k = 1 is an unbiased estimate of the ELBO.
    """
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    log_w = []
    for start in range(0, k, chunk):
        kc = min(chunk, k - start)
        eps = torch.randn((kc, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + std * eps  # (kc, B, L)
        raw = model.decode(z.flatten(0, 1))
        x_rep = x.unsqueeze(0).expand(kc, *x.shape).flatten(0, 1)
        log_px_z = model.distribution(raw).log_prob(x_rep).flatten(1).sum(1).view(kc, -1)
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = gaussian_log_density(z, mu, logvar)
        log_w.append(log_px_z + log_pz - log_qz)
    return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)


@EVALUATORS.register("iwae")
def evaluate_iwae(model, objective, data: ImageSet, device, opts) -> dict:
    g = torch.Generator(device=device).manual_seed(opts.seed)
    nll = RunningMean()  # -log p(x) bound per image
    for batch in _batches(data, opts, device, desc=f"IWAE k={opts.iwae_k}"):
        chunk = max(1, opts.iwae_decodes // batch["x"].shape[0])
        nll.add(-iwae_log_likelihood(model, batch["x"], opts.iwae_k, chunk, g))
    proto = _protocol(data, nll.n, f"IWAE bound, k={opts.iwae_k} importance samples, seed {opts.seed}; "
                                   "stderr over images")
    return {
        "iwae_nll": averaged(nll, "nats/image", "bound", proto, k=opts.iwae_k),
        "iwae_bpd": averaged(nll, "bits/dim", "bound", proto, scale=_bits_per_dim(data), k=opts.iwae_k),
    }


@EVALUATORS.register("elbo")
def evaluate_elbo(model, objective, data: ImageSet, device, opts) -> dict:
    """Test -ELBO with the KL in closed form and one posterior sample per image."""
    g = torch.Generator(device=device).manual_seed(opts.seed)
    terms = {"neg_elbo": RunningMean(), "distortion": RunningMean(), "rate": RunningMean()}  # per image
    for batch in _batches(data, opts, device):
        x = batch["x"]
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, device=mu.device)
        distortion = -model.distribution(model.decode(z)).log_prob(x).flatten(1).sum(1)
        rate = gaussian_kl(mu, logvar)
        terms["distortion"].add(distortion)
        terms["rate"].add(rate)
        terms["neg_elbo"].add(distortion + rate)
    proto = _protocol(data, terms["neg_elbo"].n,
                      f"1 posterior sample per image, analytic KL, seed {opts.seed}; stderr over images")
    return {
        "neg_elbo": averaged(terms["neg_elbo"], "nats/image", "bound", proto),
        "neg_elbo_bpd": averaged(terms["neg_elbo"], "bits/dim", "bound", proto, scale=_bits_per_dim(data)),
        "distortion": averaged(terms["distortion"], "nats/image", "estimate", proto),
        "rate": averaged(terms["rate"], "nats/image", "exact", proto),
    }


@EVALUATORS.register("reconstruction")
def evaluate_reconstruction(model, objective, data: ImageSet, device, opts) -> dict:
    """Squared error of the decoder mean at the posterior mean, per pixel on the [0, 1] scale."""
    sq, n_pix = 0.0, 0
    for batch in _batches(data, opts, device):
        x = batch["x"]
        sq += (reconstruct(model, x) - x).double().pow(2).sum().item()
        n_pix += x.numel()
    n = _count(data, opts)
    return {"reconstruction_mse": metric(sq / n_pix, "mse per sub-pixel ([0,1] scale)", "exact",
                                         _protocol(data, n, "decoder mean at the posterior mean"))}
