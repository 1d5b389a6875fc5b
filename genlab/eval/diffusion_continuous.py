"""Continuous-time likelihoods of a diffusion model: the probability-flow ODE and the VDM bound.

Both read the network as a denoiser D(x; sigma) of x = x_0 + sigma eps on the variance-exploding
scale (``model.denoise``; a discrete-time network is called at fractional timesteps, linear in
log sigma between its own), over the schedule's noise range sigma_0 .. sigma_{T-1}, with the prior
N(0, (1 + sigma_{T-1}^2) I) on that scale (the discrete bound's N(0, I) on x_{T-1}).

1. Probability-flow ODE (Song et al. 2021, "Score-Based Generative Modeling through Stochastic
   Differential Equations", arXiv:2011.13456, Section 4.3 and Appendix D.2). In u = log sigma the
   ODE is dx/du = x - D(x; e^u) =: g(x, u), and d log p(x(u)) / du = -div g. Integrated from the
   data (u_0 = log sigma_0) to the noise (u_1 = log sigma_{T-1}):
       log p_0(x(u_0)) = log N(x(u_1); 0, (1 + sigma_{T-1}^2) I) + int_{u_0}^{u_1} div g du.
   Discrete data are dequantized with uniform noise over their bin (width Delta = 2 / (levels - 1)
   on [-1, 1]), so -log P(x) <= E_u[-log p_0(x + u)] - D log Delta (Jensen): a bound on the
   discrete likelihood. The divergence is exact (D backward passes per evaluation: "bound") or
   Hutchinson's estimate with one Rademacher probe per image, fixed along the path (FFJORD;
   "estimate", with its standard error over images). Solvers: fixed-step RK4 in u, or scipy's
   RK45 (``solve_ivp``) at stated tolerances (Song et al. use rtol = atol = 1e-5).
2. VDM continuous-time bound (Kingma et al. 2021, "Variational Diffusion Models",
   arXiv:2107.00630, eq. 17) in lambda = log sigma^2 = -log SNR:
       L_inf = 1/2 E_{eps, lambda ~ U(lambda_0, lambda_1)} [(lambda_1 - lambda_0) |eps - eps_hat|^2],
   eps_hat = (x_lambda - D(x_lambda; sigma)) / sigma, x_lambda = x_0 + sigma eps, plus the prior
   KL at sigma_{T-1} and the discrete decoder at sigma_0 (both the discrete bound's L_T and L_0).
   A Monte-Carlo estimate of a bound, labelled "bound" as in VDM, with its standard error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genlab.card import likelihood_of
from genlab.data.base import ImageSet
from genlab.eval.diffusion import score_subset
from genlab.eval.metric import averaged
from genlab.eval.options import QUICK_IMAGE_CAPS
from genlab.nn import diffusion as proc
from genlab.objectives.diffusion import vlb_terms_per_dim
from genlab.registry import EVALUATORS
from genlab.stats import bits_per_dim

# Quick protocol: a few images and a fixed-step solver (about a minute on a 2-core CPU for the
# ddpm-mnist preset); paper protocol: RK45 at Song et al.'s tolerances on every requested image.
ODE_QUICK_IMAGES, ODE_QUICK_RK4_STEPS = QUICK_IMAGE_CAPS["diffusion-ode"], 25
ODE_PAPER_TOL = 1e-5
VDM_QUICK_IMAGES, VDM_TIMES = QUICK_IMAGE_CAPS["diffusion-vdm"], 16  # VDM: noise levels per image (stratified)


def noise_range(model) -> tuple[float, float]:
    """(sigma_0, sigma_{T-1}) of the model's schedule: where the data end and the prior begins."""
    sig = model.schedule.sigmas
    return float(sig[0]), float(sig[-1])


def _denoise(model, x: torch.Tensor, sigma: float, y) -> torch.Tensor:
    return model.denoise(x, torch.full((x.shape[0],), sigma, device=x.device, dtype=x.dtype), y)[0]


def _drift_and_div(model, x: torch.Tensor, u: float, y, probe: torch.Tensor | None):
    """g(x, u) = x - D(x; e^u) (B, ...) and div_x g (B,), exactly (probe None) or by Hutchinson."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        g = x - _denoise(model, x, math.exp(u), y)
        if probe is not None:
            (vjp,) = torch.autograd.grad(g, x, probe)
            div = (vjp * probe).flatten(1).sum(1)
        else:
            flat, div = g.flatten(1), x.new_zeros(x.shape[0])
            for i in range(flat.shape[1]):  # one backward pass per dimension: d g_i / d x_i
                (row,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)
                div = div + row.flatten(1)[:, i]
    return g.detach(), div.detach()


def _prior_logp(z: torch.Tensor, var: float) -> torch.Tensor:
    d = z[0].numel()
    return -0.5 * (z.double().flatten(1) ** 2).sum(1) / var - 0.5 * d * math.log(2 * math.pi * var)


def ode_log_likelihood(model, x: torch.Tensor, y=None, probe: torch.Tensor | None = None,
                       solver: str = "rk4", steps: int = 25, rtol: float = ODE_PAPER_TOL,
                       atol: float = ODE_PAPER_TOL) -> dict[str, torch.Tensor]:
    """log p_0(x) of points ``x`` (B, C, H, W) on the process scale [-1, 1] under the probability-flow ODE.

    Args:
        probe: (B, C, H, W) Hutchinson probe, fixed along the path; None: the exact divergence.
        solver: "rk4" (``steps`` fixed steps in log sigma, 4 evaluations each) or "rk45" (scipy's
            adaptive solver at ``rtol``/``atol``).
    Returns:
        {"logp": (B,) float64 nats, "prior_logp": (B,), "nfe": network evaluations per image}.
    """
    s0, s1 = noise_range(model)
    u0, u1 = math.log(s0), math.log(s1)
    B = x.shape[0]
    if solver == "rk4":
        h, z, div_int = (u1 - u0) / steps, x.detach(), x.new_zeros(B, dtype=torch.float64)
        for k in range(steps):
            u = u0 + k * h
            g1, d1 = _drift_and_div(model, z, u, y, probe)
            g2, d2 = _drift_and_div(model, z + 0.5 * h * g1, u + 0.5 * h, y, probe)
            g3, d3 = _drift_and_div(model, z + 0.5 * h * g2, u + 0.5 * h, y, probe)
            g4, d4 = _drift_and_div(model, z + h * g3, u + h, y, probe)
            z = z + h / 6 * (g1 + 2 * g2 + 2 * g3 + g4)
            div_int = div_int + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4).double()
        nfe = 4 * steps
    elif solver == "rk45":
        from scipy.integrate import solve_ivp

        shape, n = x.shape, x[0].numel() * B

        def rhs(u, state):  # state = (flattened batch, B divergence integrals), float64
            z = torch.from_numpy(state[:n]).to(x.device, x.dtype).reshape(shape)
            g, div = _drift_and_div(model, z, float(u), y, probe)
            return np.concatenate([g.double().cpu().numpy().ravel(), div.double().cpu().numpy()])

        start = np.concatenate([x.detach().double().cpu().numpy().ravel(), np.zeros(B)])
        sol = solve_ivp(rhs, (u0, u1), start, method="RK45", rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"probability-flow ODE solver failed: {sol.message}")
        end = torch.from_numpy(sol.y[:, -1])
        z, div_int, nfe = end[:n].reshape(shape).to(x.device), end[n:].to(x.device), int(sol.nfev)
    else:
        raise ValueError(f"unknown ODE solver {solver!r}")  # a bug: callers pass rk4 or rk45
    prior = _prior_logp(z, 1 + s1 ** 2)
    return {"logp": prior + div_int, "prior_logp": prior, "nfe": nfe}


def ode_nll(model, x01: torch.Tensor, y, generator: torch.Generator, exact: bool = False,
            **solver) -> dict[str, torch.Tensor]:
    """Per-image bound on -log P(x) in nats (B,) of discrete images ``x01`` in [0, 1]: uniform dequantization
    within each bin, then the ODE density. ``exact``: exact divergence, else one Hutchinson probe."""
    levels = model.data.levels
    width = 2.0 / (levels - 1)  # a bin on [-1, 1]
    x = proc.to_process(x01)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    probe = None if exact else torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
    out = ode_log_likelihood(model, x + (u - 0.5) * width, y, probe, **solver)
    dequant = -x[0].numel() * math.log(width)  # -D log Delta
    return {"total": -out["logp"] + dequant, "nfe": out["nfe"]}


def vdm_bound(model, x01: torch.Tensor, y, generator: torch.Generator, times: int = VDM_TIMES,
              per_dim: bool = False) -> dict[str, torch.Tensor]:
    """Per-image terms of the VDM continuous-time bound in nats, each (B,): "prior", "diffusion"
    (``times`` stratified noise levels per image, lambda uniform in log sigma^2), "decoder", "total".

    Every term is a sum over dimensions; ``per_dim=True`` returns them before that sum, shaped like
    the images (float64), so that a map of where the bound is spent adds up to "total".
    """
    s, levels = model.schedule, model.data.levels
    x0 = proc.to_process(x01)
    B = x0.shape[0]
    s0, s1 = noise_range(model)
    lam0, lam1 = 2 * math.log(s0), 2 * math.log(s1)
    offset = torch.rand(B, generator=generator, device=x0.device, dtype=torch.float64)
    diffusion = torch.zeros(x0.shape, device=x0.device, dtype=torch.float64)
    for j in range(times):  # stratified: (offset + j / times) mod 1 covers [0, 1) evenly per image
        frac = (offset + j / times) % 1.0
        sigma = torch.exp(0.5 * (lam0 + frac * (lam1 - lam0))).to(x0.dtype)
        shaped = sigma.reshape(-1, *([1] * (x0.dim() - 1)))
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        xs = x0 + shaped * eps
        eps_hat = (xs - model.denoise(xs, sigma, y)[0]) / shaped
        diffusion += 0.5 * (lam1 - lam0) * ((eps - eps_hat) ** 2).double() / times
    # The decoder -log p(x_0 | z at sigma_0) and the prior KL are the discrete bound's L_0 and L_T.
    t = torch.zeros(B, device=x0.device, dtype=torch.long)
    xt = proc.q_sample(s, x0, t, torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype))
    abar = proc.at(s.abar, t, xt)
    x0_hat, frac_v = model.denoise(xt / abar.sqrt(), torch.full((B,), s0, device=x0.device), y, t.float())
    variance = model.cfg.variance if model.cfg.parameterization == "ddpm" else "small"
    decoder = vlb_terms_per_dim(s, proc.p_from_x0(s, x0_hat, xt, t, variance, frac_v), x0, xt, t, levels)
    terms = {"prior": proc.prior_kl(s, x0).double(), "diffusion": diffusion, "decoder": decoder.double()}
    terms["total"] = terms["prior"] + terms["diffusion"] + terms["decoder"]
    return terms if per_dim else {k: v.flatten(1).sum(1) for k, v in terms.items()}


def _records(prefix: str, acc, kind: str, proto: str, dims: int, of: str) -> dict:
    return {f"{prefix}_nll": averaged(acc, "nats/image", kind, proto, of=of),
            f"{prefix}_bpd": averaged(acc, "bits/dim", kind, proto, scale=bits_per_dim(1.0, dims), of=of)}


@EVALUATORS.register("diffusion-ode")
@torch.no_grad()
def evaluate_ode(model, objective, test: ImageSet, device, opts) -> dict:
    """Probability-flow ODE bound on -log P(x) with uniform dequantization and Hutchinson's divergence.

    Quick protocol: at most ``ODE_QUICK_IMAGES`` images, RK4 with ``ODE_QUICK_RK4_STEPS`` steps in
    log sigma; paper protocol: RK45 at rtol = atol = 1e-5. One dequantization and one probe per image.
    """
    quick = opts.protocol == "quick"
    solver = dict(solver="rk4", steps=ODE_QUICK_RK4_STEPS) if quick else dict(solver="rk45")
    nfe = []

    def score(m, x, y, g):
        out = ode_nll(m, x, y, g, **solver)
        nfe.append(out["nfe"])
        return out

    acc, subset = score_subset(model, test, device, opts, ODE_QUICK_IMAGES, score, ("total",))
    s0, s1 = noise_range(model)
    how = (f"fixed-step RK4, {ODE_QUICK_RK4_STEPS} steps in log sigma ({4 * ODE_QUICK_RK4_STEPS} evaluations)"
           if quick else f"scipy RK45, rtol = atol = {ODE_PAPER_TOL:g} ({max(nfe)} evaluations at most per batch)")
    of = likelihood_of(model)
    proto = (f"{test.name}/{test.split}, {subset}; probability-flow ODE (Song et al. 2021) from the data "
             f"(sigma {s0:.4g}) to the prior N(0, (1 + {s1:.4g}^2) I), {how}; uniform dequantization within "
             f"each of {model.data.levels} bins (a bound on -log {of} of the discrete data, up to the divergence "
             f"estimate); Hutchinson divergence, one Rademacher probe per image (seed {opts.seed}): an unbiased "
             "estimate of that bound")
    return _records("ode", acc["total"], "estimate", proto, test.spec.dims, of)


@EVALUATORS.register("diffusion-vdm")
@torch.no_grad()
def evaluate_vdm(model, objective, test: ImageSet, device, opts) -> dict:
    """VDM continuous-time bound (Monte Carlo over noise levels, ``VDM_TIMES`` per image) on a seeded
    subset (at most ``VDM_QUICK_IMAGES`` under the quick protocol)."""
    acc, subset = score_subset(model, test, device, opts, VDM_QUICK_IMAGES, vdm_bound,
                               ("prior", "diffusion", "decoder", "total"))
    s0, s1 = noise_range(model)
    of = likelihood_of(model)
    proto = (f"{test.name}/{test.split}, {subset}; VDM continuous-time bound (Kingma et al. 2021) on -log {of}: "
             f"diffusion term by Monte Carlo over {VDM_TIMES} stratified log sigma^2 per image on [{s0:.4g}, "
             f"{s1:.4g}] (seed {opts.seed}), the discrete bound's prior KL and discretized decoder")
    out = _records("vdm", acc["total"], "bound", proto, test.spec.dims, of)
    out["vdm_diffusion"] = averaged(acc["diffusion"], "nats/image", "estimate", proto + "; the diffusion term")
    return out
