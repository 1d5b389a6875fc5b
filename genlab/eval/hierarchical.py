"""Bounds, per-group rates and active units of the hierarchical VAE (genlab/models/latent/hvae.py)."""

from __future__ import annotations

import torch

from genlab.data.base import ImageSet
from genlab.eval.latent import _batches, _count, _protocol, log_mean_weight
from genlab.eval.metric import metric
from genlab.objectives.hierarchical import ACTIVE_VARIANCE, group_rates, log_px_given_z, log_weight
from genlab.objectives.latent import per_dim
from genlab.registry import EVALUATORS


@torch.no_grad()
def hvae_iwae_log_likelihood(model, x: torch.Tensor, k: int, chunk: int, generator: torch.Generator) -> torch.Tensor:
    """The IWAE bound (B,) nats with k posterior samples of every group; the bottom-up pass runs once.

    Noise is drawn chunk by chunk, group by group, each (kc, B, C, h, w): with one group this is the
    noise ``genlab.eval.latent.iwae_log_likelihood`` draws for a VAE.
    """
    acts = model.bottom_up(x)

    def log_weights(kc):
        eps = [torch.randn((kc, x.shape[0], *s), generator=generator, device=x.device).flatten(0, 1)
               for s in model.group_shapes]
        out = model.top_down([a.repeat(kc, 1, 1, 1) for a in acts], eps)  # rows: sample-major
        return log_weight(model, out, x.repeat(kc, 1, 1, 1)).view(kc, -1)

    return log_mean_weight(log_weights, k, chunk)


@EVALUATORS.register("hvae-iwae")
def evaluate_hvae_iwae(model, objective, data: ImageSet, device, opts) -> dict:
    """IWAE bound of a hierarchical VAE with ``opts.iwae_k`` importance samples per image."""
    g = torch.Generator(device=device).manual_seed(opts.seed)
    total, sq = 0.0, 0.0
    for batch in _batches(data, opts, device, desc=f"IWAE k={opts.iwae_k}"):
        chunk = max(1, opts.iwae_decodes // batch["x"].shape[0])
        ll = hvae_iwae_log_likelihood(model, batch["x"], opts.iwae_k, chunk, g).double()
        total += (-ll).sum().item()
        sq += ll.pow(2).sum().item()
    n = _count(data, opts)
    nll = total / n
    stderr = (max(sq / n - nll**2, 0.0) / n) ** 0.5
    proto = _protocol(data, n, f"IWAE bound, k={opts.iwae_k} importance samples of every latent group, "
                               f"seed {opts.seed}")
    to_bpd = per_dim(torch.tensor(1.0), data.spec).item()
    return {
        "iwae_nll": metric(nll, "nats/image", "bound", proto, k=opts.iwae_k, stderr=stderr),
        "iwae_bpd": metric(nll * to_bpd, "bits/dim", "bound", proto, k=opts.iwae_k, stderr=stderr * to_bpd),
    }


@EVALUATORS.register("hvae-elbo")
@torch.no_grad()
def evaluate_hvae_elbo(model, objective, data: ImageSet, device, opts) -> dict:
    """Test -ELBO, distortion, the rate of every latent group and the active units of every group.

    A unit is active when the variance over the test images of its posterior mean exceeds 0.01
    (Burda et al. 2016, Sec. 5.2); lower groups' means are those given one posterior sample above.
    """
    g = torch.Generator(device=device).manual_seed(opts.seed)
    sums: dict[str, float] = {}
    mean_sum: list[torch.Tensor] | None = None
    mean_sq: list[torch.Tensor] | None = None
    for batch in _batches(data, opts, device):
        x = batch["x"]
        eps = [torch.randn((x.shape[0], *s), generator=g, device=device) for s in model.group_shapes]
        out = model.top_down(model.bottom_up(x), eps)
        distortion = -log_px_given_z(model, out["raw"], x)
        rates = group_rates(out)
        terms = {"distortion": distortion, "rate": sum(rates), "neg_elbo": distortion + sum(rates),
                 **{f"rate_g{i}": r for i, r in enumerate(rates)}}
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value.double().sum().item()
        mus = [grp["mu"].flatten(1).double() for grp in out["groups"]]
        mean_sum = [m.sum(0) for m in mus] if mean_sum is None else [a + m.sum(0) for a, m in zip(mean_sum, mus)]
        mean_sq = [m.pow(2).sum(0) for m in mus] if mean_sq is None else [a + m.pow(2).sum(0)
                                                                          for a, m in zip(mean_sq, mus)]
    n = _count(data, opts)
    proto = _protocol(data, n, f"1 posterior sample per image, KL per group in closed form, seed {opts.seed}")
    rate_kind = "estimate" if model.cfg.iaf_steps else "exact"
    results = {
        "neg_elbo": metric(sums["neg_elbo"] / n, "nats/image", "bound", proto),
        "neg_elbo_bpd": metric(sums["neg_elbo"] / n * per_dim(torch.tensor(1.0), data.spec).item(), "bits/dim",
                               "bound", proto),
        "distortion": metric(sums["distortion"] / n, "nats/image", "estimate", proto),
        "rate": metric(sums["rate"] / n, "nats/image", "estimate", proto),
    }
    au_proto = _protocol(data, n, f"units whose posterior mean varies across images by more than {ACTIVE_VARIANCE}")
    active = 0
    for i, (s, s2) in enumerate(zip(mean_sum, mean_sq)):
        results[f"rate_g{i}"] = metric(sums[f"rate_g{i}"] / n, "nats/image", rate_kind if i == 0 else "estimate",
                                       proto)
        units = int(((s2 / n - (s / n).pow(2)) > ACTIVE_VARIANCE).sum().item())
        results[f"active_units_g{i}"] = metric(units, f"of {s.numel()} units", "exact", au_proto)
        active += units
    results["active_units"] = metric(active, f"of {sum(s.numel() for s in mean_sum)} units", "exact", au_proto)
    return results
