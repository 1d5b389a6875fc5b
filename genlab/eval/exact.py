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
from genlab.eval.batches import Sums, image_order, run_batches
from genlab.eval.metric import averaged
from genlab.nn.modes import eval_mode
from genlab.registry import EVALUATORS
from genlab.stats import bits_per_dim


def _describe_pixels(data: ImageSet) -> str:
    if data.spec.is_signal:
        return f"8-bit (mu-law) audio samples, discrete likelihood over 256 levels ({data.note})"
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


def class_conditional_nlls(model, objective, x: torch.Tensor, classes: int, extra: dict | None = None) -> torch.Tensor:
    """(K, B): -log p(x | y = k) for every class k, one pass per class (memory of one batch).

    ``extra``: further batch keys the model conditions on besides the label (e.g. "speaker"), kept as given.
    """
    return torch.stack([objective_nll(model, objective, {**(extra or {}), "x": x,
                                                         "y": torch.full((x.shape[0],), k, dtype=torch.long,
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
    per_class = class_conditional_nlls(model, objective, batch["x"], classes,
                                       {k: v for k, v in batch.items() if k not in ("x", "y")})
    return {"nll": marginal_nll(per_class), "nll_conditional": per_class.gather(0, batch["y"].view(1, -1)).squeeze(0)}


@EVALUATORS.register("exact-nll")
def evaluate(model, objective, test: ImageSet, device, opts) -> dict:
    """Test NLL of the whole split (or a seeded random subset of ``opts.max_examples``).

    Args:
        model: an autoregressive model; ``objective`` must return per-example "nll_nats".
        test: the split to score; images are sent to ``device`` batch by batch.
        opts: needs ``batch_size``; optional ``max_examples`` (None: all), ``seed``, and ``state_dir``
            (finished batches are kept there, so an interrupted evaluation continues).
    Returns:
        {"nll": nats/image, "bpd": bits/dim} of -log p(x), each a ``metric`` record of the card's
        likelihood kind, ``of`` = "p(x)", with the standard error of the mean over images; for a
        class-conditional model also "nll_conditional" and "bpd_conditional", ``of`` = "p(x | y)".
    """
    kind, classes = model.card.likelihood, conditioning(model).num_classes
    if kind == "none":
        raise InputError(f"{type(model).__name__} gives no likelihood: exact-nll does not apply to it")
    seed = getattr(opts, "seed", 0)
    # A random subset, not a prefix: the binarized-MNIST test file is sorted by digit.
    order, subset = image_order(len(test), getattr(opts, "max_examples", None), seed)
    # Used only by a split binarized on the fly ("bernoulli" transform), on the images' device.
    binarize_gen = torch.Generator(device=test.images.device).manual_seed(seed)
    if classes and test.labels is None:
        raise InputError(f"{test.name}/{test.split} has no labels: a class-conditional model needs them for "
                         "-log p(x | y)")

    def step(idx):
        batch = {k: v.to(device) for k, v in test.batch(idx.to(test.images.device), binarize_gen).items()}
        return example_nlls(model, objective, batch, classes)

    def finish(sums: Sums) -> dict:
        n, dims = sums.n, test.spec.dims
        what = {"exact": "exact chain-rule NLL", "bound": "upper bound on the NLL", "estimate": "estimated NLL"}[kind]
        protocol = f"{test.name}/{test.split}, {n} images ({subset}); {_describe_pixels(test)}; {what}"
        of = {"nll": "p(x)", "nll_conditional": likelihood_of(model)}
        says = {"nll": "" if not classes else
                f" -log p(x) = -log sum_y p(x | y) p(y), the class-conditional model marginalized over its "
                f"{classes} classes with a uniform prior p(y) = 1/{classes} ({classes} passes per image)",
                "nll_conditional": " -log p(x | y) at each image's true label y (a conditional likelihood: not "
                                   "comparable with an unconditional model's -log p(x))"}
        out = {}
        for name, acc in sums.acc.items():  # a RunningMean of the per-image NLL per reported name
            proto = protocol + says[name]
            out[name] = averaged(acc, "nats/clip" if test.spec.is_signal else "nats/image", kind, proto, images=subset, of=of[name])
            unit = "bits/sample" if test.spec.is_signal else "bits/dim"  # one dimension is one audio sample
            out[name.replace("nll", "bpd")] = averaged(acc, unit, kind, proto, scale=bits_per_dim(1.0, dims),
                                                       images=subset, of=of[name])
        return out

    with eval_mode(model), torch.inference_mode():
        return run_batches("exact-nll", opts, order, step, finish, [binarize_gen])
