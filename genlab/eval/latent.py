"""Likelihood bounds and reconstruction error of latent-variable models."""

from __future__ import annotations

import math

import torch

from genlab.card import likelihood_of
from genlab.data.base import ImageSet
from genlab.errors import InputError
from genlab.eval.batches import Sums, image_order, run_batches
from genlab.eval.metric import averaged, metric
from genlab.nn.vq import codebook_usage
from genlab.objectives.latent import decoder_log_prob, gaussian_log_density, labels_for, posterior_rate
from genlab.registry import EVALUATORS
from genlab.sampling.latent import reconstruct
from genlab.stats import bits_per_dim


def _loader(data: ImageSet, opts, device):
    """(order, which-images words, indices -> model-ready batch on ``device``)."""
    order, which = image_order(len(data), opts.max_examples, opts.seed)
    return order, which, lambda idx: {k: v.to(device) for k, v in data.batch(idx.to(data.images.device)).items()}


def _protocol(data: ImageSet, n: int, extra: str = "") -> str:
    what = f"{data.name}/{data.split}, {n} images" + (f" ({data.note})" if data.note else "")
    return f"{what}{'; ' + extra if extra else ''}"


# Share of importance samples drawn from the prior (a defensive mixture, Hesterberg 1995, "Weighted
# average importance sampling and defensive mixture distributions"): when the encoder is wrong about an
# image, the weights of the prior's samples keep the bound near -log E_p(z)[p(x|z)] instead of exploding.
PRIOR_FRACTION = 0.1


def prior_samples(k: int, prior_fraction: float) -> int:
    """How many of k importance samples come from the prior: floor(prior_fraction * k), so k = 1 is the ELBO."""
    if not 0.0 <= prior_fraction < 1.0:
        raise InputError(f"the prior share of the IWAE proposal must be in [0, 1), got {prior_fraction}")
    return int(math.floor(prior_fraction * k))


def log_mean_weight(log_weights, k: int, chunk: int) -> torch.Tensor:
    """log (1/k) sum_i exp(w_i) over k importance log-weights drawn ``chunk`` at a time, in float64.

    Args:
        log_weights: (start, kc) -> (kc, B) log-weights of samples start .. start + kc - 1.
    Returns:
        (B,) float64 nats: the importance-sampling (IWAE) lower bound on log p(x).
    """
    log_w = torch.cat([log_weights(start, min(chunk, k - start)).double() for start in range(0, k, chunk)])
    return torch.logsumexp(log_w, dim=0) - math.log(k)


@torch.inference_mode()
def iwae_log_likelihood(model, x: torch.Tensor, k: int, chunk: int, generator: torch.Generator,
                        prior_fraction: float = PRIOR_FRACTION, y: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x) >= log (1/k) sum_i p(x, z_i) / r(z_i | x) (Burda et al. 2016, arXiv:1509.00519).

    The proposal r = (1 - a) q(z|x) + a p(z) mixes the encoder with the prior, a = m / k with
    m = floor(prior_fraction * k) samples drawn from the prior and k - m from the encoder
    (stratified: a fixed number from each part). The average weight is still an unbiased estimate
    of p(x), so its log is a lower bound in expectation (Jensen), and every weight is at most
    p(x | z) / a, which keeps the bound finite when the encoder is wrong. prior_fraction = 0 is
    the plain IWAE bound. With an IAF posterior q(z|x) has no density in closed form at a prior
    sample, so the proposal is the encoder alone (``iwae_prior_samples`` says how many were used).

    Args:
        model: a VAE: posterior_params(x, y=None), reparameterize(params, eps) -> dict, decode(z, y=None) -> raw,
            distribution(raw).log_prob.
        x: (B, C, H, W) images.
        k: importance samples per image; k = 1 is an unbiased estimate of the ELBO.
        chunk: importance samples per decoder pass (chunk * B images are decoded at once).
        generator: the source of all noise, on x's device.
        y: (B,) labels of a conditional VAE: the bound is then on log p(x | y); None otherwise.
    Returns:
        (B,) lower bounds in nats.
    """
    params = model.posterior_params(x, y=y)  # encoded once for all k
    B, L = x.shape[0], model.cfg.latent_dim
    m = iwae_prior_samples(model, k, prior_fraction)
    log_enc, log_pri = (math.log1p(-m / k), math.log(m / k)) if m else (0.0, None)
    half_log_2pi = 0.5 * math.log(2 * math.pi) * L

    def log_weights(start, kc):
        eps = torch.randn((kc, B, L), generator=generator, device=x.device, dtype=params.dtype)
        out = model.reparameterize(params.repeat(kc, 1), eps.flatten(0, 1))  # rows: sample-major
        z = out["z"].view(kc, B, L)
        n_prior = min(max(m - start, 0), kc)  # samples 0 .. m-1 come from the prior
        if n_prior:
            z[:n_prior] = eps[:n_prior]
        x_rep = x.expand(kc, *x.shape).flatten(0, 1)
        y_rep = None if y is None else y.repeat(kc)  # sample-major rows, as x_rep
        log_px_z = decoder_log_prob(model, x_rep, z.flatten(0, 1), y_rep).view(kc, -1)  # both decoder kinds
        log_pz = -0.5 * z.pow(2).sum(-1) - half_log_2pi
        if "logdet" in out:  # log q(z) = log N(z0; mu, var) - log|det dz/dz0|
            log_qz = log_pz + posterior_rate(out, one_sample=True).view(kc, -1)
        else:
            log_qz = gaussian_log_density(z, out["mu"].view(kc, B, L), out["logvar"].view(kc, B, L))
        if m:
            log_qz = torch.logaddexp(log_qz + log_enc, log_pz + log_pri)
        return log_px_z + log_pz - log_qz

    return log_mean_weight(log_weights, k, chunk).to(x.dtype)


def iwae_prior_samples(model, k: int, prior_fraction: float) -> int:
    """How many of a VAE's k importance samples come from the prior (none with an IAF posterior)."""
    return 0 if model.flow_posterior else prior_samples(k, prior_fraction)


@EVALUATORS.register("iwae")
def evaluate_iwae(model, objective, data: ImageSet, device, opts) -> dict:
    """IWAE bound with ``opts.iwae_k`` samples per image, a share ``opts.iwae_prior_fraction`` from the prior."""
    g = torch.Generator(device=device).manual_seed(opts.seed)
    order, which, load = _loader(data, opts, device)
    k, a = opts.iwae_k, opts.iwae_prior_fraction

    def step(idx):
        batch = load(idx)
        x = batch["x"]
        chunk = max(1, opts.iwae_decodes // x.shape[0])
        # -log p(x) bound per image (-log p(x | y) of a conditional VAE, at the true labels)
        return {"nll": -iwae_log_likelihood(model, x, k, chunk, g, a, labels_for(model, batch))}

    def finish(sums: Sums) -> dict:
        m, nll = iwae_prior_samples(model, k, a), sums.acc["nll"]
        proposal = (f"proposal {k - m} from the encoder + {m} from the prior (defensive mixture)" if m
                    else "proposal: the encoder")
        proto = _protocol(data, nll.n, f"{which}; IWAE bound, k={k} importance samples, {proposal}, "
                                       f"seed {opts.seed}; stderr over images")
        extra = dict(k=k, prior_samples=m, images=which, of=likelihood_of(model))  # p(x | y): at the true labels
        return {"iwae_nll": averaged(nll, "nats/image", "bound", proto, **extra),
                "iwae_bpd": averaged(nll, "bits/dim", "bound", proto, scale=bits_per_dim(1.0, data.spec.dims), **extra)}

    return run_batches("iwae", opts, order, step, finish, [g])


@EVALUATORS.register("elbo")
def evaluate_elbo(model, objective, data: ImageSet, device, opts) -> dict:
    """Test -ELBO with the KL in closed form (one-sample with IAF steps) and one posterior sample per image."""
    g = torch.Generator(device=device).manual_seed(opts.seed)
    order, which, load = _loader(data, opts, device)

    @torch.inference_mode()
    def step(idx):
        batch = load(idx)
        x, y = batch["x"], labels_for(model, batch)
        eps = torch.randn((x.shape[0], model.cfg.latent_dim), generator=g, device=x.device)
        out = model.reparameterize(model.posterior_params(x, y=y), eps)
        distortion = -decoder_log_prob(model, x, out["z"], y)  # both decoder kinds
        rate = posterior_rate(out)  # closed form; a one-sample estimate with IAF steps
        return {"neg_elbo": distortion + rate, "distortion": distortion, "rate": rate}  # per image

    def finish(sums: Sums) -> dict:
        terms = sums.acc
        proto = _protocol(data, sums.n, f"{which}; 1 posterior sample per image, "
                                        f"{'one-sample KL (IAF posterior)' if model.flow_posterior else 'analytic KL'}, "
                                        f"seed {opts.seed}; "
                                        "stderr over images")
        of = likelihood_of(model)  # p(x | y) for a conditional VAE, at the images' true labels
        return {
            "neg_elbo": averaged(terms["neg_elbo"], "nats/image", "bound", proto, images=which, of=of),
            "neg_elbo_bpd": averaged(terms["neg_elbo"], "bits/dim", "bound", proto, scale=bits_per_dim(1.0, data.spec.dims),
                                     images=which, of=of),
            "distortion": averaged(terms["distortion"], "nats/image", "estimate", proto, images=which),
            "rate": averaged(terms["rate"], "nats/image", "estimate" if model.flow_posterior else "exact", proto,
                             images=which),
        }

    return run_batches("elbo", opts, order, step, finish, [g])


@EVALUATORS.register("reconstruction")
def evaluate_reconstruction(model, objective, data: ImageSet, device, opts) -> dict:
    """Squared error of the decoder mean at the posterior mean, per pixel on the [0, 1] scale."""
    order, which, load = _loader(data, opts, device)

    @torch.inference_mode()
    def step(idx):
        batch = load(idx)
        x = batch["x"]
        return {"mse": (reconstruct(model, x, labels_for(model, batch)) - x).pow(2).flatten(1).mean(1)}

    def finish(sums: Sums) -> dict:
        proto = _protocol(data, sums.n, f"{which}; decoder mean at the posterior mean")
        return {"reconstruction_mse": averaged(sums.acc["mse"], "mse per sub-pixel ([0,1] scale)", "exact", proto,
                                               images=which)}

    return run_batches("reconstruction", opts, order, step, finish)



@EVALUATORS.register("codebook")
@torch.inference_mode()
def evaluate_codebook(model, objective, data: ImageSet, device, opts) -> dict:
    """A VQ-VAE's codebook on the test images: fraction of codes used and perplexity of their frequencies.

    Counts over every grid position of every image (not a per-image mean), so it runs in one pass.
    """
    order, which, load = _loader(data, opts, device)
    codes = torch.cat([model.tokens(load(order[i:i + opts.batch_size])["x"]).flatten().cpu()
                       for i in range(0, len(order), opts.batch_size)])
    usage, perplexity = codebook_usage(codes, model.quantizer.size)
    proto = _protocol(data, len(order), f"{which}; tokens of every grid position, K={model.quantizer.size} codes")
    return {"codebook_usage": metric(usage, "fraction of the K codes", "exact", proto),
            "codebook_perplexity": metric(perplexity, "exp(entropy of code frequencies)", "exact", proto)}


@EVALUATORS.register("vq-bound")
def evaluate_vq_bound(model, objective, data: ImageSet, device, opts) -> dict:
    """A two-stage VQ-VAE's prior NLL in bits per token (exact for the token grid) and its bound on -log p(x).

    The bound is -log p_prior(z_q(x)) - log p(x | z_q(x)) with z_q(x) the first stage's deterministic
    (nearest-code) tokens: one term of p(x) = sum_z p_prior(z) p(x | z), so an upper bound on -log p(x)
    of the model that prior and decoder define (see genlab/models/latent/vqvae_prior.py).
    """
    order, which, load = _loader(data, opts, device)

    @torch.inference_mode()
    def step(idx):
        terms = objective(model, load(idx), "main", 0)  # images in: the objective encodes them
        return {"bound": terms["nll_nats"], "prior": terms["prior_nats"], "distortion": terms["distortion"]}

    def finish(sums: Sums) -> dict:
        h, w = model.grid
        proto = _protocol(data, sums.n, f"{which}; tokens z_q(x) of the frozen first stage (nearest code, "
                                        f"{h}x{w} grid, K={model.quantizer.size}); stderr over images")
        bound = ("-log p(x) <= -log p_prior(z_q(x)) - log p(x | z_q(x)): deterministic encoder, so one term of "
                 "the sum over token grids; the first stage was trained with straight-through gradients, not on "
                 "this bound (the usual VQ-VAE caveat)")
        acc = sums.acc
        return {
            "prior_nll_bits_per_token": averaged(acc["prior"], "bits/token", "exact", proto,
                                                 scale=bits_per_dim(1.0, h * w), images=which),
            "prior_nll": averaged(acc["prior"], "nats/image", "exact", proto, images=which),
            "distortion": averaged(acc["distortion"], "nats/image", "exact", proto, images=which),
            "vq_bound": averaged(acc["bound"], "nats/image", "bound", proto, images=which, bound=bound),
            "vq_bound_bpd": averaged(acc["bound"], "bits/dim", "bound", proto, scale=bits_per_dim(1.0, data.spec.dims),
                                     images=which, bound=bound),
        }

    return run_batches("vq-bound", opts, order, step, finish)
