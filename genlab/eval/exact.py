"""Test log-likelihood of models whose objective returns a per-example NLL.

An autoregressive model's -log p(x) is a sum of exact conditional terms, so the
test NLL is exact, unlike the ELBO/IWAE bounds of latent models. The kind written
with each number is the model card's likelihood kind, and a class-conditional
model's number is labelled as -log p(x | y), not -log p(x).
Reported as nats per image and bits per dimension, nll / (D ln 2) with D the
number of sub-pixels (van den Oord et al. 2016, arXiv:1601.06759, Section 5.1).

For a class-conditional model the test NLL is the marginal
-log p(x) = -log sum_y p(x | y) p(y) with a uniform p(y) = 1/K (one pass per
class), reported as "nll"/"bpd"; -log p(x | true label) is reported beside it as
"nll_conditional"/"bpd_conditional", never under the plain name.
"""

from __future__ import annotations

import math

import torch

from genlab.card import conditioning, likelihood_of
from genlab.data.base import ImageSet
from genlab.errors import InputError
from genlab.eval.metric import averaged
from genlab.registry import EVALUATORS
from genlab.stats import RunningMean


def _describe_pixels(data: ImageSet) -> str:
    if data.spec.bits == 8:
        return "8-bit pixels, discrete likelihood over 256 levels"
    if data.transform == "bernoulli":
        return "binarized on the fly (Bernoulli(intensity/255)), one draw per image, seeded"
    return "binary pixels as stored" + (f" ({data.note})" if data.note else "")


def objective_nll(model, objective, batch: dict) -> torch.Tensor:
    """(B,) -log p(x) in nats (-log p(x | batch["y"]) for a conditional model) from the objective's "nll_nats"."""
    terms = objective(model, batch, "eval", 0)
    if "nll_nats" not in terms:
        raise InputError(f"the run's objective returns {sorted(terms)}, not 'nll_nats': likelihoods of this model "
                         "need its default objective 'nll' (or 'nll-mutated')")
    return terms["nll_nats"]


def class_conditional_nlls(model, objective, x: torch.Tensor, classes: int) -> torch.Tensor:
    """(K, B): -log p(x | y = k) for every class k, one pass per class (memory of one batch)."""
    return torch.stack([objective_nll(model, objective, {"x": x, "y": torch.full((x.shape[0],), k, dtype=torch.long,
                                                                                  device=x.device)})
                        for k in range(classes)])


def marginal_nll(per_class: torch.Tensor) -> torch.Tensor:
    """(K, B) -log p(x | y=k) -> (B,) -log p(x) = -log sum_k p(x | k) / K (uniform class prior)."""
    return -(torch.logsumexp(-per_class, dim=0) - math.log(per_class.shape[0]))


def example_nlls(model, objective, batch: dict, classes: int) -> dict[str, torch.Tensor]:
    """Per-example NLLs of a batch: {"nll"} for an unconditional model (classes 0); for a conditional one
    {"nll": marginal over a uniform class prior, "nll_conditional": given the batch's true labels}."""
    if not classes:
        return {"nll": objective_nll(model, objective, batch)}
    per_class = class_conditional_nlls(model, objective, batch["x"], classes)
    return {"nll": marginal_nll(per_class), "nll_conditional": per_class.gather(0, batch["y"].view(1, -1)).squeeze(0)}


@EVALUATORS.register("exact-nll")
@torch.no_grad()
def evaluate(model, objective, test: ImageSet, device, opts) -> dict:
    """Test NLL of the whole split (or a seeded random subset of ``opts.max_examples``).

    Args:
        model: an autoregressive model; ``objective`` must return per-example "nll_nats".
        test: the split to score; images are sent to ``device`` batch by batch.
        opts: needs ``batch_size``; optional ``max_examples`` (None: all) and ``seed``.
    Returns:
        {"nll": nats/image, "bpd": bits/dim} of -log p(x), each a ``metric`` record of the card's
        likelihood kind, ``of`` = "p(x)", with the standard error of the mean over images; for a
        class-conditional model also "nll_conditional" and "bpd_conditional", ``of`` = "p(x | y)".
    """
    kind, classes = model.card.likelihood, conditioning(model).num_classes
    if kind == "none":
        raise InputError(f"{type(model).__name__} gives no likelihood: exact-nll does not apply to it")
    batch_size = getattr(opts, "batch_size", 256)
    max_examples = getattr(opts, "max_examples", None)
    seed = getattr(opts, "seed", 0)
    n_all = len(test)
    n = n_all if max_examples is None else min(n_all, int(max_examples))
    if n < 1:
        raise InputError("nothing to evaluate: the split is empty or max_examples < 1")
    g = torch.Generator().manual_seed(seed)
    # A random subset, not a prefix: the binarized-MNIST test file is sorted by digit.
    order = torch.arange(n_all) if n == n_all else torch.randperm(n_all, generator=g)[:n]
    # Used only by a split binarized on the fly ("bernoulli" transform), on the images' device.
    binarize_gen = torch.Generator(device=test.images.device).manual_seed(seed)
    if classes and test.labels is None:
        raise InputError(f"{test.name}/{test.split} has no labels: a class-conditional model needs them for "
                         "-log p(x | y)")
    was_training = model.training
    model.eval()
    accs = {}  # per reported name: a RunningMean of the per-image NLL
    try:
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in test.batch(idx.to(test.images.device), binarize_gen).items()}
            for name, nll in example_nlls(model, objective, batch, classes).items():
                accs.setdefault(name, RunningMean()).add(nll)
    finally:
        model.train(was_training)
    dims = test.spec.dims
    subset = "all images" if n == n_all else f"random subset of {n} of {n_all} (seed {seed})"
    what = {"exact": "exact chain-rule NLL", "bound": "upper bound on the NLL", "estimate": "estimated NLL"}[kind]
    protocol = f"{test.name}/{test.split}, {n} images ({subset}); {_describe_pixels(test)}; {what}"
    of = {"nll": "p(x)", "nll_conditional": likelihood_of(model)}
    says = {"nll": "" if not classes else
            f" -log p(x) = -log sum_y p(x | y) p(y), the class-conditional model marginalized over its {classes} "
            f"classes with a uniform prior p(y) = 1/{classes} ({classes} passes per image)",
            "nll_conditional": " -log p(x | y) at each image's true label y (a conditional likelihood: not "
                               "comparable with an unconditional model's -log p(x))"}
    out = {}
    for name, acc in accs.items():
        proto = protocol + says[name]
        out[name] = averaged(acc, "nats/image", kind, proto, of=of[name])
        out[name.replace("nll", "bpd")] = averaged(acc, "bits/dim", kind, proto, scale=1 / (dims * math.log(2)),
                                                   of=of[name])
    return out
