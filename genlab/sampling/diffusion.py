"""Samplers of diffusion models: ancestral DDPM, DDIM, EDM's Euler and Heun, DPM-Solver++(2M); classifier-free guidance.

Every sampler is a pure function; sample i draws its initial noise and every later noise from
``generators[i]`` only, so it is the same image whatever the batch size. All of them reach the
network through ``denoised`` below, which also applies guidance.

Guidance scale convention (``guidance``, written s): the guided estimate is
eps_u + s (eps_c - eps_u), so s = 1 is the conditional model, s = 0 the unconditional one, and
s > 1 extrapolates. Ho & Salimans (2022) write w = s - 1 ((1 + w) eps_c - w eps_u). The same
combination is applied to the x_0 estimate, which is affine in eps at a fixed x_t. The two
branches run as one batched network call.

NFE (network function evaluations) of each sampler, counted in batched calls, is given by
``nfe(name, options, model)``: ddpm and ddim take one per step, Euler and DPM-Solver++(2M) N,
Heun 2N - 1 (its last step is an Euler step, EDM Algorithm 1).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from genlab.card import conditioning
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn import diffusion as proc
from genlab.nn.labels import class_labels
from genlab.nn.modes import eval_mode
from genlab.registry import register_sampler
from genlab.rng import randn_per_sample


@dataclass
class DDPMOptions:
    steps: int = bounded(0, ge=0)  # reverse steps; 0: all T, fewer: respaced timesteps (iDDPM Section 4)
    guidance: float = bounded(1.0)  # s in eps_u + s (eps_c - eps_u): 1 conditional, 0 unconditional
    clip: bool = True  # clip each x_0 estimate to [-1, 1] (as DDPM does)


@dataclass
class DDIMOptions:
    steps: int = bounded(50, ge=0)  # respaced timesteps; 0: all T
    eta: float = bounded(0.0, ge=0.0)  # 0: deterministic DDIM; 1 on all T steps: ancestral DDPM with beta~_t
    guidance: float = bounded(1.0)  # s in eps_u + s (eps_c - eps_u): 1 conditional, 0 unconditional
    clip: bool = True  # clip each x_0 estimate to [-1, 1]


@dataclass
class EDMOptions:
    steps: int = bounded(18, ge=1)  # N noise levels (EDM uses 18 on CIFAR-10: 35 evaluations with Heun)
    sigma_min: float | None = bounded(None, gt=0.0)  # None: the schedule's smallest (ddpm) or 0.002 (edm)
    sigma_max: float | None = bounded(None, gt=0.0)  # None: the schedule's largest (ddpm) or 80 (edm)
    rho: float = bounded(7.0, gt=0.0)  # spacing exponent of the noise levels (EDM eq. 5)
    guidance: float = bounded(1.0)  # s in eps_u + s (eps_c - eps_u): 1 conditional, 0 unconditional


@dataclass
class ChurnOptions(EDMOptions):
    """Euler and Heun: EDM's noise levels plus its stochastic churn (Karras et al. 2022, Algorithm 2)."""

    s_churn: float = bounded(0.0, ge=0.0)  # total churn; gamma_i = min(s_churn / N, sqrt(2) - 1); 0: the ODE
    s_tmin: float = bounded(0.0, ge=0.0)  # churn only at noise levels sigma_i >= s_tmin
    s_tmax: float | None = bounded(None, gt=0.0)  # ... and sigma_i <= s_tmax (None: no upper limit)
    s_noise: float = bounded(1.0, ge=0.0)  # standard deviation of the added noise, in units of the raise (EDM: 1.007)


IGNORED_LABEL = ("this conditional model ignores its label, so guidance has nothing to amplify: train it with "
                 "labels (model.conditional=true, objective.p_uncond < 1)")


def _labels(model, n: int, label, device, guidance: float = 1.0) -> torch.Tensor | None:
    cond = conditioning(model)
    if label is None and cond.class_conditional:
        raise InputError("this diffusion model is class-conditional: pass --label (and --set guidance=0 "
                         "for its unconditional samples)")
    # One more than the classes: the null label (model.null_label = num_classes) draws unconditional samples.
    y = class_labels(label, n, cond.num_classes + 1 if cond.num_classes else 0, device, who="this diffusion model")
    if y is None:
        return None
    if guidance != 1.0 and not model.label_sensitive():
        raise InputError(IGNORED_LABEL + " (every label embeds like the null token)")
    return y.clone()  # its own memory, not a view of one expanded label


def denoised(model, x: torch.Tensor, sigma: torch.Tensor, y, guidance: float, time=None):
    """Guided D(x; sigma) (and learned-variance channels, from the conditional branch) of ``model.denoise``.

    s = 1 (or an unconditional model) is one plain call; s = 0 one call with the null token; any
    other s one call on the doubled batch [conditional; null token].
    """
    if y is None or guidance == 1.0:
        return model.denoise(x, sigma, y, time)
    null = torch.full_like(y, model.null_label)
    if guidance == 0.0:
        return model.denoise(x, sigma, null, time)
    both, frac = model.denoise(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([y, null]),
                               None if time is None else torch.cat([time, time]))
    cond, uncond = both.chunk(2)
    # The guard on the outputs themselves: a network whose forward drops the label (whatever its
    # embedding holds) gives the two branches bit-identical outputs, and guidance would amplify nothing.
    # Checked where sigma >= 1 only: at small noise D(x) is nearly x, and for a large x the two branches
    # can round to the same float32 values although the network's outputs differ.
    real = (y != model.null_label) & (sigma >= 1)
    if real.any() and torch.equal(cond[real], uncond[real]):
        raise InputError(IGNORED_LABEL)
    return uncond + guidance * (cond - uncond), None if frac is None else frac.chunk(2)[0]


def _in_eval_mode(sampler):
    """Run ``sampler`` with dropout off (the model's train/eval mode is restored after): otherwise
    dropout's global random numbers would make sample i depend on the batch it is drawn in."""

    @functools.wraps(sampler)
    def wrapper(model, *args, **kwargs):
        with eval_mode(model):
            return sampler(model, *args, **kwargs)

    return wrapper


def _start(model, n, generators, device, label, guidance):
    y = _labels(model, n, label, device, guidance)
    shape = (model.data.channels, model.data.height, model.data.width)
    return y, shape, randn_per_sample(generators, shape, device)


def _discrete_loop(model, n, generators, device, label, steps, guidance, clip, eta: float | None,
                   prefix=None, prefix_rows: int = 0):
    """Ancestral sampling (eta None: variance from the model) or DDIM (eta), on respaced timesteps."""
    y, shape, x = _start(model, n, generators, device, label, guidance)
    if prefix_rows:
        if prefix is None or tuple(prefix.shape) != (n, *shape) or not 0 < prefix_rows <= shape[1]:
            raise InputError(f"prefix_rows={prefix_rows} needs prefix images of shape {(n, *shape)} and "
                             f"0 < prefix_rows <= {shape[1]}")
        prefix = proc.to_process(prefix.to(device=device, dtype=x.dtype))
    x = _reverse(model, x, y, generators, steps, guidance, clip, eta, prefix if prefix_rows else None, prefix_rows)
    return proc.to_image(x, model.data.levels)


def _reverse(model, x, y, generators, steps, guidance, clip, eta: float | None, known=None,
             rows: int = 0, record: list | None = None) -> torch.Tensor:
    """The reverse chain from x_T = ``x`` (process space) to x_0; noise only when eta is None or > 0.

    ``record``: a list that receives x_T and then x after every step (process space), for trajectories.

    Completion by replacement (Song et al. 2021, arXiv:2011.13456, Appendix I; RePaint without its
    resampling): before every step the top ``rows`` rows of x_t are replaced by the ``known`` image
    noised to level t, so the rest is sampled to agree with them; x_0 keeps them exactly.
    """
    n, shape, device = x.shape[0], x.shape[1:], x.device
    sched, times = proc.respace(model.schedule, steps or model.schedule.T)
    sigmas = model.schedule.sigmas[times].float().to(device)  # noise level of each kept timestep
    abar = sched.abar.float().to(device)
    variance = model.cfg.variance if model.cfg.parameterization == "ddpm" else "small"
    if record is not None:
        record.append(x)
    for i in reversed(range(sched.T)):
        idx = torch.full((n,), i, device=device, dtype=torch.long)
        time = torch.full((n,), float(times[i]), device=device)
        if rows:
            noised = abar[i].sqrt() * known + (1 - abar[i]).sqrt() * randn_per_sample(generators, shape, device)
            x = torch.cat([noised[:, :, :rows], x[:, :, rows:]], dim=2)
        x0, frac = denoised(model, x / abar[i].sqrt(), sigmas[i].expand(n), y, guidance, time)
        if clip:
            x0 = x0.clamp(-1, 1)
        if eta is None:
            p = proc.p_from_x0(sched, x0, x, idx, variance, frac)
            x = p["mean"]
            if i > 0:
                x = x + torch.exp(0.5 * p["logvar"]) * randn_per_sample(generators, shape, device)
        else:
            prev = abar[i - 1] if i > 0 else abar.new_ones(())
            eps = proc.eps_from(sched, x, idx, x0)
            sigma = eta * ((1 - prev) / (1 - abar[i]) * (1 - abar[i] / prev)).sqrt()
            x = prev.sqrt() * x0 + (1 - prev - sigma ** 2).clamp_min(0).sqrt() * eps
            if i > 0 and eta > 0:
                x = x + sigma * randn_per_sample(generators, shape, device)
        if record is not None:
            record.append(x)
    return x if not rows else torch.cat([known[:, :, :rows], x[:, :, rows:]], dim=2)


@register_sampler("ddpm", DDPMOptions)
@torch.no_grad()
@_in_eval_mode
def sample_ddpm(model, n: int, generators: list[torch.Generator], device, label=None, steps: int = 0,
                guidance: float = 1.0, clip: bool = True, prefix=None, prefix_rows: int = 0, **_) -> torch.Tensor:
    """Ancestral sampling x_{t-1} ~ p(x_{t-1} | x_t) (Ho et al. Algorithm 2); (n, C, H, W) in [0, 1].

    ``prefix`` (n, C, H, W) in [0, 1] with ``prefix_rows`` > 0: complete images whose top rows are given.
    """
    return _discrete_loop(model, n, generators, device, label, steps, guidance, clip, None, prefix, prefix_rows)


@register_sampler("ddim", DDIMOptions)
@torch.no_grad()
@_in_eval_mode
def sample_ddim(model, n: int, generators: list[torch.Generator], device, label=None, steps: int = 50,
                eta: float = 0.0, guidance: float = 1.0, clip: bool = True, prefix=None, prefix_rows: int = 0,
                **_) -> torch.Tensor:
    """DDIM (Song et al. 2020, eq. 12) with sigma_t = eta sqrt(beta~_t) on respaced timesteps; (n, C, H, W).

    ``prefix`` and ``prefix_rows`` complete given top rows, as in ``sample_ddpm``.
    """
    return _discrete_loop(model, n, generators, device, label, steps, guidance, clip, eta, prefix, prefix_rows)


def sigma_range(model, sigma_min: float | None, sigma_max: float | None) -> tuple[float, float]:
    """The noise levels an EDM sampler spans: the options, else the model's own."""
    if model.cfg.parameterization == "edm":
        lo, hi = 0.002, 80.0
    else:
        sig = model.schedule.sigmas
        lo, hi = float(sig[0]), float(sig[-1])
    lo, hi = sigma_min or lo, sigma_max or hi
    if lo >= hi:
        raise InputError(f"sigma_min={lo} must be below sigma_max={hi}")
    return lo, hi


def _edm_loop(model, n, generators, device, label, steps, sigma_min, sigma_max, rho, guidance, heun: bool,
              s_churn=0.0, s_tmin=0.0, s_tmax=None, s_noise=1.0):
    """EDM Algorithm 2: Euler steps in sigma, optionally Heun-corrected (not the last), with churn.

    Churn raises the noise level sigma_i to sigma_hat = (1 + gamma_i) sigma_i by adding fresh noise of
    standard deviation s_noise sqrt(sigma_hat^2 - sigma_i^2) before the step, with gamma_i =
    min(s_churn / N, sqrt(2) - 1) where s_tmin <= sigma_i <= s_tmax, else 0. A step with gamma_i = 0
    draws no noise, so s_churn = 0 is Algorithm 1 exactly; the network calls are the same either way.
    """
    y, shape, noise = _start(model, n, generators, device, label, guidance)
    sigmas = proc.karras_sigmas(steps, *sigma_range(model, sigma_min, sigma_max), rho).float().to(device)
    x = noise * sigmas[0]
    gamma_max = min(s_churn / steps, math.sqrt(2) - 1)
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        if gamma_max > 0 and s_tmin <= s.item() <= (math.inf if s_tmax is None else s_tmax):
            s_hat = s * (1 + gamma_max)
            x = x + s_noise * (s_hat ** 2 - s ** 2).sqrt() * randn_per_sample(generators, shape, device)
            s = s_hat
        d = (x - denoised(model, x, s.expand(n), y, guidance)[0]) / s
        x_next = x + (s_next - s) * d
        if heun and s_next > 0:
            d_next = (x_next - denoised(model, x_next, s_next.expand(n), y, guidance)[0]) / s_next
            x_next = x + (s_next - s) * (d + d_next) / 2
        x = x_next
    return proc.to_image(x, model.data.levels)


@register_sampler("euler", ChurnOptions)
@torch.no_grad()
@_in_eval_mode
def sample_euler(model, n: int, generators: list[torch.Generator], device, label=None, steps: int = 18,
                 sigma_min: float | None = None, sigma_max: float | None = None, rho: float = 7.0,
                 guidance: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float | None = None,
                 s_noise: float = 1.0, **_) -> torch.Tensor:
    """Euler steps of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma; N evaluations.

    ``s_churn`` > 0: EDM's stochastic sampler (noise added before each step within [s_tmin, s_tmax]).
    """
    return _edm_loop(model, n, generators, device, label, steps, sigma_min, sigma_max, rho, guidance, False,
                     s_churn, s_tmin, s_tmax, s_noise)


@register_sampler("heun", ChurnOptions)
@torch.no_grad()
@_in_eval_mode
def sample_heun(model, n: int, generators: list[torch.Generator], device, label=None, steps: int = 18,
                sigma_min: float | None = None, sigma_max: float | None = None, rho: float = 7.0,
                guidance: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float | None = None,
                s_noise: float = 1.0, **_) -> torch.Tensor:
    """Heun's second-order method on the EDM noise levels, Euler on the last step; 2N - 1 evaluations.

    ``s_churn`` > 0: EDM's stochastic sampler (Algorithm 2), same number of evaluations.
    """
    return _edm_loop(model, n, generators, device, label, steps, sigma_min, sigma_max, rho, guidance, True,
                     s_churn, s_tmin, s_tmax, s_noise)


@register_sampler("dpmpp-2m", EDMOptions)
@torch.no_grad()
@_in_eval_mode
def sample_dpmpp_2m(model, n: int, generators: list[torch.Generator], device, label=None, steps: int = 18,
                    sigma_min: float | None = None, sigma_max: float | None = None, rho: float = 7.0,
                    guidance: float = 1.0, **_) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2) on the EDM noise levels; N evaluations.

    In lambda = -log sigma, each step is exact for a constant x_0 estimate; the second-order
    multistep correction extrapolates the estimate from the previous step's (first step and the
    final step to sigma = 0 are first order, the latter returning the last estimate).
    """
    y, _, noise = _start(model, n, generators, device, label, guidance)
    sigmas = proc.karras_sigmas(steps, *sigma_range(model, sigma_min, sigma_max), rho).float().to(device)
    x, previous = noise * sigmas[0], None
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = denoised(model, x, s.expand(n), y, guidance)[0]
        if s_next == 0:
            x = d
            break
        h = torch.log(s / s_next)  # lambda_next - lambda
        estimate = d
        if previous is not None:
            r = torch.log(sigmas[i - 1] / s) / h  # previous step size over this one
            estimate = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * previous
        x = (s_next / s) * x - torch.expm1(-h) * estimate
        previous = d
    return proc.to_image(x, model.data.levels)


def nfe(name: str, options, model) -> int:
    """Network evaluations (batched calls) one sample set of sampler ``name`` with ``options`` costs."""
    if name in ("ddpm", "ddim"):
        return len(proc.respace(model.schedule, options.steps or model.schedule.T)[1])
    return options.steps if name in ("euler", "dpmpp-2m") else 2 * options.steps - 1


@torch.no_grad()
@_in_eval_mode
def ddim_encode(model, x: torch.Tensor, steps: int = 50, label=None) -> torch.Tensor:
    """DDIM's deterministic map from images x (n, C, H, W) in [0, 1] to their x_T (Song et al. 2020, Section 5.4).

    The eta = 0 update run forwards in time, with the network evaluated at the step's start (the usual
    first-order inversion): decoding x_T with ``ddim_decode`` at the same ``steps`` gives the image back
    up to that discretization error.
    """
    y = _labels(model, x.shape[0], label, x.device)
    sched, times = proc.respace(model.schedule, steps or model.schedule.T)
    sigmas = model.schedule.sigmas[times].float().to(x.device)
    abar = sched.abar.float().to(x.device)
    n = x.shape[0]
    h = proc.to_process(x)
    for i in range(sched.T - 1):
        time = torch.full((n,), float(times[i]), device=x.device)
        x0, _ = model.denoise(h / abar[i].sqrt(), sigmas[i].expand(n), y, time)
        eps = (h - abar[i].sqrt() * x0) / (1 - abar[i]).sqrt()
        h = abar[i + 1].sqrt() * x0 + (1 - abar[i + 1]).sqrt() * eps
    return h


@torch.no_grad()
@_in_eval_mode
def ddim_trajectory(model, n: int, generators: list[torch.Generator], device, label=None, steps: int = 20,
                    guidance: float = 1.0) -> torch.Tensor:
    """The states of deterministic DDIM from x_T to x_0: (steps + 1, n, C, H, W) in [0, 1].

    State k is x_t after k steps mapped from [-1, 1] to [0, 1] (clamped: early states are mostly
    noise, whose spread exceeds the image range); the last is the sample ``sample_ddim`` returns,
    before rounding to the data's levels.
    """
    y, _, x = _start(model, n, generators, device, label, guidance)
    states: list[torch.Tensor] = []
    _reverse(model, x, y, generators, steps, guidance, True, 0.0, record=states)
    return ((torch.stack(states) + 1) / 2).clamp(0, 1)


@torch.no_grad()
@_in_eval_mode
def ddim_decode(model, x_T: torch.Tensor, steps: int = 50, label=None, clip: bool = False) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from given x_T (n, C, H, W); images in [0, 1], not rounded to levels."""
    y = _labels(model, x_T.shape[0], label, x_T.device)
    return (_reverse(model, x_T, y, [], steps, 1.0, clip, eta=0.0).clamp(-1, 1) + 1) / 2


@torch.no_grad()
def interpolate(model, x_a: torch.Tensor, x_b: torch.Tensor, frames: int = 10, steps: int = 50,
                label=None) -> torch.Tensor:
    """Images along the spherical path between the DDIM encodings of two images; (frames, C, H, W).

    Spherical in the noise: x_T of an image is close to Gaussian, whose typical set is a shell,
    and a straight line between two points of it passes inside the shell.
    """
    from genlab.sampling.latent import slerp

    codes = ddim_encode(model, torch.stack([x_a, x_b]), steps, label)
    t = torch.linspace(0, 1, frames, device=codes.device)
    path = slerp(codes[0].flatten(), codes[1].flatten(), t).reshape(frames, *codes.shape[1:])
    return ddim_decode(model, path, steps, label)
