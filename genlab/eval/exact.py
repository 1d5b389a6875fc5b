"""Test log-likelihood of models whose objective returns a per-example NLL.

An autoregressive model's -log p(x) is a sum of exact conditional terms, so the
test NLL is exact, unlike the ELBO/IWAE bounds of latent models. The kind written
with each number is the model card's likelihood kind, and a class-conditional
model's number is labelled as -log p(x | y), not -log p(x).
Reported as nats per image and bits per dimension, nll / (D ln 2) with D the
number of sub-pixels (van den Oord et al. 2016, arXiv:1601.06759, Section 5.1).
"""

from __future__ import annotations

import math

import torch

from genlab.card import likelihood_of
from genlab.data.base import ImageSet
from genlab.errors import InputError
from genlab.eval.metric import metric
from genlab.registry import EVALUATORS


def _describe_pixels(data: ImageSet) -> str:
    if data.spec.bits == 8:
        return "8-bit pixels, discrete likelihood over 256 levels"
    if data.transform == "bernoulli":
        return "binarized on the fly (Bernoulli(intensity/255)), one draw per image, seeded"
    return "binary pixels as stored" + (f" ({data.note})" if data.note else "")


@EVALUATORS.register("exact-nll")
@torch.no_grad()
def evaluate(model, objective, test: ImageSet, device, opts) -> dict:
    """Test NLL of the whole split (or a seeded random subset of ``opts.max_examples``).

    Args:
        model: an autoregressive model; ``objective`` must return per-example "nll_nats".
        test: the split to score; images are sent to ``device`` batch by batch.
        opts: needs ``batch_size``; optional ``max_examples`` (None: all) and ``seed``.
    Returns:
        {"nll": nats/image, "bpd": bits/dim}, each a ``metric`` record of the card's likelihood
        kind (and ``of``: "p(x)" or "p(x | y)") with the standard error of the mean over images.
    """
    kind, of = model.card.likelihood, likelihood_of(model)
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
    was_training = model.training
    model.eval()
    total, total_sq = 0.0, 0.0
    try:
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in test.batch(idx.to(test.images.device), binarize_gen).items()}
            terms = objective(model, batch, "eval", 0)
            if "nll_nats" not in terms:
                raise InputError(f"exact-nll needs an objective returning 'nll_nats' (got {sorted(terms)}); "
                                 "evaluate with the model's default objective 'nll'")
            nll = terms["nll_nats"].double()
            total += nll.sum().item()
            total_sq += nll.pow(2).sum().item()
    finally:
        model.train(was_training)
    mean = total / n
    stderr = math.sqrt(max(total_sq / n - mean**2, 0.0) / max(n - 1, 1))
    dims = test.spec.dims
    subset = "all images" if n == n_all else f"random subset of {n} of {n_all} (seed {seed})"
    what = {"exact": "exact chain-rule NLL", "bound": "upper bound on the NLL", "estimate": "estimated NLL"}[kind]
    if of != "p(x)":
        what += f" -log {of} (given each image's label)"
    protocol = f"{test.name}/{test.split}, {n} images ({subset}); {_describe_pixels(test)}; {what}"
    return {
        "nll": metric(mean, "nats/image", kind, protocol, n=n, stderr=stderr, of=of),
        "bpd": metric(mean / (dims * math.log(2)), "bits/dim", kind, protocol, n=n,
                      stderr=stderr / (dims * math.log(2)), of=of),
    }
