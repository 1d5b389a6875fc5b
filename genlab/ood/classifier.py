"""A generative classifier that can say "none of these": Bayes' rule on a likelihood model, two reject rules.

    log p(y | x) = log p(x | y) + log p(y) - log p(x),   log p(x) = logsumexp_y [log p(x | y) + log p(y)]

log p(x | y) comes, in nats, from either

* one class-conditional run: its card's ``conditioning`` takes a label and its card has a likelihood
  (gated-pixelcnn or pixel-transformer with ``model.conditional=true``: exact; diffusion with
  ``model.conditional=true``: its variational bound; vae with ``model.conditional=true``: its IWAE
  bound; both labelled "bound"), or
* one run per class, each trained on one label with ``--set data.classes=C``: log p(x | y = C) is that
  run's log p(x) (``genlab.ood.likelihood.family_likelihood``: exact for autoregressive models, the IWAE
  bound for a VAE).

A bound in place of log p(x | y) makes p(y | x) an approximation (labelled "bound" everywhere). The prior
p(y) is the label frequencies of the training split(s) the likelihoods were fitted on.

Two reject rules, each with a threshold fitted on held-out in-distribution images so that a stated share
of them (the false-rejection rate) is rejected:

* ambiguity (Chow 1970, "On optimum recognition error and reject tradeoff", IEEE Trans. IT 16(1)): reject
  when max_y p(y | x) < 1 - t. It is scored as log(1 - max_y p(y | x)) = logsumexp over the other labels,
  which keeps its order where max_y p(y | x) rounds to 1 (likelihood gaps of tens of nats are common).
* outlier: reject when s(x) > tau, with s one of genlab's outlier scores (``genlab.ood.scores``) of the
  marginal p(x): the raw likelihood is known to rank some outliers as more likely (Nalisnick et al. 2019),
  so the default is a corrected score (input complexity, Serra et al. 2020). The typicality score's H_hat
  is the mean bits/dim of the held-out images the thresholds are fitted on.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from genlab.card import conditioning, likelihood_of
from genlab.data.base import to_model_input
from genlab.errors import InputError
from genlab.eval.diffusion import variational_bound
from genlab.eval.exact import objective_nll
from genlab.nn.modes import eval_mode
from genlab.nn.spec import DataSpec
from genlab.ood.compress import code_lengths
from genlab.ood.likelihood import LikelihoodOptions, family_likelihood, per_label_common_noise
from genlab.ood.metrics import threshold_at_tpr
from genlab.ood.scores import OOD_SCORES, Reference, SetTerms, compute_scores
from genlab.stats import bits_per_dim
from genlab.train.run import LoadedRun

RETRAIN = ("train a class-conditional likelihood model (e.g. `genlab train gated-pixelcnn --set "
           "model.conditional=true`), or give one run per class, each trained with --set data.classes=C")


def _autoregressive_nll(model, objective, x: torch.Tensor, labels: torch.Tensor, generator,
                        lik_opts: LikelihoodOptions) -> torch.Tensor:
    """(K, B) exact -log p(x | y = labels[k]) from one batch of K * B images (image b repeated once per label)."""
    k, b = labels.numel(), x.shape[0]
    y = labels.repeat_interleave(b)  # (K*B,): class-major, so the result reshapes to (K, B)
    return objective_nll(model, objective, {"x": x.repeat(k, 1, 1, 1), "y": y}).view(k, b)


def _diffusion_nll(model, objective, x: torch.Tensor, labels: torch.Tensor, generator,
                   lik_opts: LikelihoodOptions) -> torch.Tensor:
    """(K, B) variational bounds on -log p(x | y). Every label sees the same noise draws x_t (common random
    numbers): the posterior depends on differences between labels, which independent draws would blur."""
    return per_label_common_noise(lambda y: variational_bound(model, x, y, generator)["total"], x.shape[0],
                                  labels.to(x.device), generator)


def _latent_nll(model, objective, x: torch.Tensor, labels: torch.Tensor, generator,
                lik_opts: LikelihoodOptions) -> torch.Tensor:
    """A conditional VAE's (K, B) IWAE bounds on -log p(x | y), with the importance samples of ``lik_opts``."""
    return family_likelihood(model, objective, lik_opts).class_nlls(x, labels, generator)


# The families whose class-conditional likelihood genlab can compute, by the card's family:
# f(model, objective, x, labels, generator, lik_opts) -> (K, B) nats (only the bounds read lik_opts).
_CONDITIONAL_NLL = {"autoregressive": _autoregressive_nll, "diffusion": _diffusion_nll, "latent": _latent_nll}


def _label_prior(counts: torch.Tensor) -> torch.Tensor:
    return (counts.double() / counts.sum()).log()


class ClassLikelihood:
    """log p(x | y) for every label y of one or several runs, and the prior log p(y).

    Attributes:
        labels: (K,) the class index of each column.
        log_prior: (K,) float64 log p(y) (training label frequencies).
        kind: "exact" or "bound".
        spec: the data spec the runs model.
    """

    def __init__(self, runs: list[LoadedRun], lik_opts: LikelihoodOptions | None = None):
        if not runs:
            raise InputError("give at least one run folder")
        self.runs = runs
        self.spec: DataSpec = runs[0].spec
        self.device = next(runs[0].model.parameters()).device
        if len(runs) == 1:
            self._init_conditional(runs[0], lik_opts or LikelihoodOptions())
        else:
            self._init_per_class(runs, lik_opts or LikelihoodOptions())
        if self.labels.numel() < 2:
            raise InputError("a classifier needs at least two classes")

    def _init_conditional(self, run: LoadedRun, lik_opts: LikelihoodOptions) -> None:
        model, name = run.model, run.cfg.model_name
        card, cond = model.card, conditioning(model)
        if card.likelihood == "none":
            raise InputError(f"{name} gives no likelihood p(x | y) (a GAN has none): {RETRAIN}")
        if not cond.class_conditional:
            how = ("retrain it with --set model.conditional=true, or give one run per class trained with "
                   "--set data.classes=C" if card.conditioning.class_label == "config" else
                   "give one run per class, each trained with --set data.classes=C")
            raise InputError(f"{run.run_dir} models {likelihood_of(model)}, not p(x | y): {how}")
        if card.family not in _CONDITIONAL_NLL:
            raise InputError(f"genlab computes p(x | y) for {', '.join(_CONDITIONAL_NLL)} models, not {card.family} "
                             f"({name}): {RETRAIN}")
        self.kind = card.likelihood
        self.labels = torch.arange(cond.num_classes)
        labels = run.dataset("train").labels
        self.log_prior = _label_prior(torch.bincount(labels.cpu(), minlength=cond.num_classes))
        self._nll = functools.partial(_CONDITIONAL_NLL[card.family], lik_opts=lik_opts)
        how = {"autoregressive": "one batch of N x K images",
               "latent": f"IWAE, k={lik_opts.iwae_k}, one pass per label"}.get(card.family, "one pass per label")
        self._what = f"{name} ({likelihood_of(model)}, {self.kind}; {how})"

    def _init_per_class(self, runs: list[LoadedRun], lik_opts: LikelihoodOptions) -> None:
        labels, counts, self._liks = [], [], []
        for run in runs:
            classes = run.cfg.data.classes
            if len(classes) != 1:
                raise InputError(f"{run.run_dir} was trained on {'every class' if not classes else 'classes ' + ','.join(map(str, classes))}: "
                                 "with several runs each must model one class (trained with --set data.classes=C)")
            if conditioning(run.model).class_conditional:
                raise InputError(f"{run.run_dir} is class-conditional: give it alone, not with per-class runs")
            s = run.spec
            if (run.cfg.data.name, s.channels, s.height, s.width, s.bits) != (runs[0].cfg.data.name, self.spec.channels,
                                                                            self.spec.height, self.spec.width, self.spec.bits):
                raise InputError(f"{run.run_dir} models {run.cfg.data.name} but {runs[0].run_dir} models "
                                 f"{runs[0].cfg.data.name}: per-class runs must share one dataset")
            lik = family_likelihood(run.model, run.objective, lik_opts)
            if lik.kind not in ("exact", "bound"):
                raise InputError(f"{run.run_dir} gives a {lik.kind} score, not a likelihood p(x): {RETRAIN}")
            labels.append(classes[0])
            counts.append(len(run.dataset("train")))
            self._liks.append(lik)
        if len(set(labels)) != len(labels):
            raise InputError(f"two runs model the same class ({sorted(labels)}): give one run per class")
        order = sorted(range(len(labels)), key=labels.__getitem__)
        self.runs = [runs[i] for i in order]
        self._liks = [self._liks[i] for i in order]
        self.labels = torch.tensor([labels[i] for i in order])
        self.log_prior = _label_prior(torch.tensor([counts[i] for i in order]))
        self.kind = "exact" if all(lik.kind == "exact" for lik in self._liks) else "bound"
        self._what = (f"{len(runs)} runs, one per class ({runs[0].cfg.model_name}...; log p(x | y=c) is run c's "
                      f"log p(x), {self.kind}: {self._liks[0].describe()})")

    def describe(self) -> str:
        return self._what

    @torch.no_grad()
    def log_likelihoods(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, C, H, W) model input -> (B, K) float64 log p(x | y = labels[k]) in nats."""
        if len(self.runs) == 1:
            run = self.runs[0]
            with eval_mode(run.model):
                nll = self._nll(run.model, run.objective, x, self.labels.to(x.device), generator)
        else:
            nll = torch.stack([lik.nll(x, generator) for lik in self._liks])
        return -nll.double().T.cpu()


def posterior(log_lik: torch.Tensor, log_prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bayes' rule in log space.

    Args:
        log_lik: (N, K) log p(x | y) in nats.
        log_prior: (K,) log p(y).
    Returns:
        ((N, K) log p(y | x), (N,) log p(x) = logsumexp_y [log p(x | y) + log p(y)]).
    """
    joint = log_lik + log_prior
    log_px = torch.logsumexp(joint, dim=1)
    return joint - log_px[:, None], log_px


def ambiguity_score(log_post: torch.Tensor) -> torch.Tensor:
    """(N, K) log p(y | x) -> (N,) log(1 - max_y p(y | x)), summed in log space over the other labels."""
    others = log_post.clone()
    others.scatter_(1, log_post.argmax(1, keepdim=True), -math.inf)
    return torch.logsumexp(others, dim=1)


@dataclass
class Scored:
    """What the classifier says about a set of images (CPU, float64)."""

    log_lik: torch.Tensor  # (N, K) log p(x | y), nats
    log_post: torch.Tensor  # (N, K) log p(y | x)
    log_px: torch.Tensor  # (N,) log p(x), nats
    terms: SetTerms  # per-image bits/dim terms of the marginal, for the outlier scores

    @property
    def confidence(self) -> np.ndarray:
        """max_y p(y | x)."""
        return self.log_post.max(1).values.exp().numpy()

    @property
    def ambiguity(self) -> np.ndarray:
        return ambiguity_score(self.log_post).numpy()


def score_levels(lik: ClassLikelihood, levels: torch.Tensor, transform: str, batch_size: int,
                 generator: torch.Generator, compressors=("png", "zlib"), log=None) -> Scored:
    """Classify images already in the model's format.

    Args:
        levels: uint8 (N, C, H, W): 0/1 ("binary") or 0..255 ("scale").
        batch_size: images per pass; a class-conditional autoregressive run evaluates batch_size x K at once.
        generator: noise of bounds (diffusion x_t, IWAE samples), on the model's device.
    """
    out = []
    for start in range(0, levels.shape[0], batch_size):
        x = to_model_input(levels[start:start + batch_size].to(lik.device), transform)
        out.append(lik.log_likelihoods(x, generator))
        if log is not None and (start // batch_size) % 10 == 9:
            log(f"    {min(start + batch_size, levels.shape[0])}/{levels.shape[0]} images")
    dims = lik.spec.dims
    return scored_from(torch.cat(out), lik.log_prior, dims,
                       {c: code_lengths(levels.cpu(), lik.spec.bits, c) / dims for c in compressors})


def scored_from(log_lik: torch.Tensor, log_prior: torch.Tensor, dims: int,
                code_bpd: dict[str, np.ndarray] | None = None) -> Scored:
    """Bayes' rule on (N, K) log p(x | y) in nats; ``dims`` turns -log p(x) into bits/dim; ``code_bpd`` are the
    compressors' code lengths per dimension (the complexity scores need them)."""
    log_post, log_px = posterior(log_lik.double(), log_prior.double())
    return Scored(log_lik, log_post, log_px, SetTerms(bpd=bits_per_dim(-log_px, dims).numpy(), code_bpd=code_bpd or {}))


@dataclass
class RejectRules:
    """Both reject rules with thresholds fitted at one false-rejection rate on held-out images."""

    false_rejection: float  # the share of held-out in-distribution images each rule rejects (at most)
    log_ambiguity: float  # reject when log(1 - max_y p(y|x)) > this, i.e. max_y p(y|x) < 1 - t
    outlier_score: str  # a name in genlab.ood.scores.OOD_SCORES
    outlier_threshold: float  # reject when the score (bits/dim) > this
    reference: Reference  # H_hat of the typicality score: the held-out images' mean bits/dim
    n_fit: int
    fitted_on: str

    @property
    def chow_t(self) -> float:
        """t of Chow's rule max_y p(y | x) < 1 - t."""
        return math.exp(self.log_ambiguity)

    def to_dict(self) -> dict:
        return {"false_rejection": self.false_rejection, "chow_t": self.chow_t, "log_ambiguity": self.log_ambiguity,
                "outlier_score": self.outlier_score, "outlier_label": OOD_SCORES.get(self.outlier_score).label,
                "outlier_threshold": self.outlier_threshold, "outlier_unit": "bits/dim",
                "reference_mean_bpd": self.reference.mean_bpd, "n_fit": self.n_fit, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, d: dict) -> "RejectRules":
        ref = Reference(d["reference_mean_bpd"], d["n_fit"], d["fitted_on"])
        return cls(d["false_rejection"], d["log_ambiguity"], d["outlier_score"], d["outlier_threshold"], ref,
                   d["n_fit"], d["fitted_on"])


def check_outlier_score(name: str) -> None:
    if name not in OOD_SCORES:
        raise InputError(f"unknown outlier score {name!r}; choose one of {', '.join(OOD_SCORES.names())}")
    if "background" in OOD_SCORES.get(name).needs:
        raise InputError(f"the {name} score needs a background run, which `genlab classify` does not take; "
                         "choose typicality, complexity-zlib, complexity-png or bpd")


def fit_reject_rules(held_out: Scored, false_rejection: float, outlier_score: str, fitted_on: str) -> RejectRules:
    """Thresholds that reject at most ``false_rejection`` of the held-out images, each rule on its own.

    Each threshold is the smallest held-out score with at least (1 - rate) n held-out scores at or below it
    (``genlab.ood.metrics.threshold_at_tpr``), so at most rate * n held-out images score above it.
    """
    if not 0.0 < false_rejection < 1.0:
        raise InputError(f"the false-rejection rate must be in (0, 1), not {false_rejection}")
    check_outlier_score(outlier_score)
    ref = Reference(float(held_out.terms.bpd.mean()), len(held_out.terms.bpd), fitted_on)
    scores = outlier_scores(held_out, ref, [outlier_score])[outlier_score]
    return RejectRules(false_rejection, threshold_at_tpr(held_out.ambiguity, 1.0 - false_rejection), outlier_score,
                       threshold_at_tpr(scores, 1.0 - false_rejection), ref, len(scores), fitted_on)


def outlier_scores(scored: Scored, ref: Reference, names: list[str]) -> dict[str, np.ndarray]:
    """name -> (N,) outlier scores of the marginal p(x) (``genlab.ood.scores``), higher = more outlying."""
    return compute_scores(scored.terms, ref, names)


def decide(scored: Scored, rules: RejectRules, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: "label" (argmax p(y|x)), "confidence", "ambiguous" and "outlier" (each rule's verdict),
    "accepted" (neither rule rejects), "outlier_value" (the rule's score)."""
    value = outlier_scores(scored, rules.reference, [rules.outlier_score])[rules.outlier_score]
    ambiguous = scored.ambiguity > rules.log_ambiguity
    outlier = value > rules.outlier_threshold
    return {"label": labels[scored.log_post.argmax(1)].numpy(), "confidence": scored.confidence,
            "ambiguous": ambiguous, "outlier": outlier, "accepted": ~(ambiguous | outlier), "outlier_value": value}
