"""Bounds, per-group rates and active units of the hierarchical VAE (genlab/models/latent/hvae.py)."""

from __future__ import annotations

import torch

from genlab.data.base import ImageSet
from genlab.errors import InputError
from genlab.eval.batches import Sums, run_batches
from genlab.eval.latent import _loader, _protocol, iwae_log_likelihood, log_mean_weight
from genlab.eval.metric import averaged, metric
from genlab.objectives.hierarchical import ACTIVE_VARIANCE, group_rates, log_px_given_z, log_weight
from genlab.registry import EVALUATORS
from genlab.stats import bits_per_dim


@torch.inference_mode()
def hvae_iwae_log_likelihood(model, x: torch.Tensor, k: int, chunk: int, generator: torch.Generator) -> torch.Tensor:
    """The IWAE bound (B,) nats with k posterior samples of every group; the bottom-up pass runs once.

    Noise is drawn chunk by chunk, group by group, each (kc, B, C, h, w): with one group this is the
    noise ``genlab.eval.latent.iwae_log_likelihood`` draws for a VAE.
    """
    acts = model.bottom_up(x)

    def log_weights(start, kc):
        eps = [torch.randn((kc, x.shape[0], *s), generator=generator, device=x.device).flatten(0, 1)
               for s in model.group_shapes]
        out = model.top_down([a.repeat(kc, 1, 1, 1) for a in acts], eps)  # rows: sample-major
        return log_weight(model, out, x.repeat(kc, 1, 1, 1)).view(kc, -1)

    return log_mean_weight(log_weights, k, chunk).to(x.dtype)


# The IWAE bound function behind each IWAE evaluator a card may list, for callers that need the bound of
# a batch (genlab ood, run.nll) rather than an evaluation.
IWAE_BOUNDS = {"iwae": iwae_log_likelihood, "hvae-iwae": hvae_iwae_log_likelihood}


def iwae_bound_of(model):
    """(model, x, k, chunk, generator) -> (B,) log-likelihood lower bounds, per the model card's IWAE evaluator."""
    for name in model.card.evaluators:
        if name in IWAE_BOUNDS:
            return IWAE_BOUNDS[name]
    raise InputError(f"{type(model).__name__} lists no IWAE evaluator ({', '.join(IWAE_BOUNDS)}) on its card")


@EVALUATORS.register("hvae-iwae")
def evaluate_hvae_iwae(model, objective, data: ImageSet, device, opts) -> dict:
    """IWAE bound of a hierarchical VAE with ``opts.iwae_k`` importance samples of every group per image."""
    g = torch.Generator(device=device).manual_seed(opts.seed)
    order, which, load = _loader(data, opts, device)
    k = opts.iwae_k

    def step(idx):
        x = load(idx)["x"]
        chunk = max(1, opts.iwae_decodes // x.shape[0])
        return {"nll": -hvae_iwae_log_likelihood(model, x, k, chunk, g)}  # -log p(x) bound per image

    def finish(sums: Sums) -> dict:
        proto = _protocol(data, sums.n, f"{which}; IWAE bound, k={k} importance samples of every latent group, "
                                        f"proposal: the encoder, seed {opts.seed}; stderr over images")
        nll = sums.acc["nll"]
        return {"iwae_nll": averaged(nll, "nats/image", "bound", proto, k=k, images=which),
                "iwae_bpd": averaged(nll, "bits/dim", "bound", proto, scale=bits_per_dim(1.0, data.spec.dims), k=k,
                                     images=which)}

    return run_batches("hvae-iwae", opts, order, step, finish, [g])


@EVALUATORS.register("hvae-elbo")
def evaluate_hvae_elbo(model, objective, data: ImageSet, device, opts) -> dict:
    """Test -ELBO, distortion, the rate of every latent group and the active units of every group.

    A unit is active when the variance over the test images of its posterior mean exceeds 0.01
    (Burda et al. 2016, Sec. 5.2); lower groups' means are those given one posterior sample above.
    """
    g = torch.Generator(device=device).manual_seed(opts.seed)
    order, which, load = _loader(data, opts, device)

    @torch.inference_mode()
    def step(idx):
        x = load(idx)["x"]
        eps = [torch.randn((x.shape[0], *s), generator=g, device=device) for s in model.group_shapes]
        out = model.top_down(model.bottom_up(x), eps)
        distortion = -log_px_given_z(model, out["raw"], x)
        rates = group_rates(out)
        values = {"neg_elbo": distortion + sum(rates), "distortion": distortion, "rate": sum(rates),
                  **{f"rate_g{i}": r for i, r in enumerate(rates)}}
        for i, grp in enumerate(out["groups"]):  # every unit's posterior mean, for its variance over images
            for u, mu in enumerate(grp["mu"].flatten(1).unbind(1)):
                values[f"mu:{i}:{u}"] = mu
        return values

    def finish(sums: Sums) -> dict:
        acc = sums.acc
        proto = _protocol(data, sums.n, f"{which}; 1 posterior sample per image, KL per group in closed form "
                                        f"(one-sample with an IAF top group), seed {opts.seed}; stderr over images")
        records = {
            "neg_elbo": averaged(acc["neg_elbo"], "nats/image", "bound", proto, images=which),
            "neg_elbo_bpd": averaged(acc["neg_elbo"], "bits/dim", "bound", proto,
                                     scale=bits_per_dim(1.0, data.spec.dims), images=which),
            "distortion": averaged(acc["distortion"], "nats/image", "estimate", proto, images=which),
            "rate": averaged(acc["rate"], "nats/image", "estimate", proto, images=which),
        }
        au_proto = _protocol(data, sums.n, f"{which}; units whose posterior mean varies across the images by "
                                           f"more than {ACTIVE_VARIANCE} (Burda et al. 2016)")
        total, units = 0, 0
        for i, shape in enumerate(model.group_shapes):
            # The top group's rate is exact given x (closed form); lower groups' depend on the sample above.
            kind = "exact" if i == 0 and not model.flow_posterior else "estimate"
            records[f"rate_g{i}"] = averaged(acc[f"rate_g{i}"], "nats/image", kind, proto, images=which)
            n_units = shape[0] * shape[1] * shape[2]
            active = sum(_variance(acc[f"mu:{i}:{u}"]) > ACTIVE_VARIANCE for u in range(n_units))
            records[f"active_units_g{i}"] = metric(active, f"of {n_units} units", "estimate", au_proto)
            total, units = total + active, units + n_units
        records["active_units"] = metric(total, f"of {units} units", "estimate", au_proto)
        return records

    return run_batches("hvae-elbo", opts, order, step, finish, [g])


def _variance(acc) -> float:
    """The sample variance of the values a RunningMean holds (0 for fewer than two)."""
    return 0.0 if acc.stderr is None else acc.stderr**2 * acc.n
