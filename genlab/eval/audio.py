"""Sample quality of a class-conditional audio model (WaveNet on FSDD), judged by a shipped spoken-digit classifier.

The model draws clips for the labels 0, 1, ..., 9, 0, 1, ... (sample i gets label i mod 10, generator
(seed, i)); the dataset's domain network (``fsdd-digits-v1``, ``genlab/eval/feature_nets``) classifies
them. Reported:

* ``digit_agreement``: the percentage of generated clips the classifier hears as the digit they were
  drawn for (chance is 10 %), with the classifier's own accuracy on the real clips of the evaluated
  split beside it (``classifier_accuracy``: the ceiling to compare with);
* ``frechet_<net>``: the Frechet distance between Gaussians fitted to the classifier's penultimate
  features of the generated clips and of the real clips of the split (the FID formula, in this
  network's feature space; with a few hundred clips it is biased upwards: compare equal sample counts).

Drawing audio sample by sample is slow on a CPU (a 0.5 s clip is 4,000 sequential steps), so the quick
protocol draws ``QUICK_SAMPLE_CAPS["spoken-digits"]`` clips; ``--protocol paper`` draws ``n_samples``.
"""

from __future__ import annotations

import dataclasses

import torch

from genlab.card import conditioning
from genlab.data.base import ImageSet
from genlab.errors import InputError
from genlab.eval.features import domain_feature_net, extract
from genlab.eval.metric import metric
from genlab.eval.options import QUICK_SAMPLE_CAPS
from genlab.eval.sample_metrics import fid, label_accuracy, model_samples
from genlab.registry import EVALUATORS
from genlab.stats import standard_error


def clips_to_draw(opts) -> int:
    """How many clips the evaluator draws: n_samples, capped under the quick protocol."""
    n = int(opts.n_samples)
    cap = QUICK_SAMPLE_CAPS["spoken-digits"]
    return min(n, cap) if getattr(opts, "protocol", "quick") == "quick" else n


@EVALUATORS.register("spoken-digits")
def evaluate(model, objective, test: ImageSet, device, opts) -> dict:
    """Classifier agreement and Frechet distance of generated clips; see the module docstring."""
    net = domain_feature_net(test.name, opts, device)
    classes = conditioning(model).num_classes
    if net is None or not test.spec.is_signal:
        raise InputError(f"spoken-digits judges audio with a spoken-digit classifier; {test.name} has none "
                         "(train the model on data.name=fsdd)")
    if not classes:
        raise InputError("spoken-digits needs a class-conditional model (model.conditional=true): the agreement "
                         "is with the requested digit")
    n = clips_to_draw(opts)
    clips, labels, note = model_samples(model, device, dataclasses.replace(opts, n_samples=n))
    fake = extract(net, clips)  # the shipped network is loaded in eval mode
    real = extract(net, test.batch(torch.arange(len(test), device=test.images.device))["x"].float().cpu())
    real_acc = label_accuracy(real.logits, test.labels)
    hits = (fake.logits.argmax(1) == labels).double() * 100
    protocol = (f"{n} generated clips ({note}) classified by {net.description}, trained on {net.dataset}; "
                f"real: all {len(test)} clips of {test.name}/{test.split}")
    if n < QUICK_SAMPLE_CAPS["spoken-digits"] * 10:
        protocol += f" (few clips: the quick protocol's cap {QUICK_SAMPLE_CAPS['spoken-digits']}; --protocol paper)"
    return {
        "digit_agreement": metric(label_accuracy(fake.logits, labels), "%", "estimate", protocol + "; chance 10 %",
                                  n=n, stderr=standard_error(hits)),
        "classifier_accuracy": metric(real_acc, "%", "exact", f"{net.name} top-1 on all {len(test)} real clips of "
                                      f"{test.name}/{test.split} (the ceiling for digit_agreement)", n=len(test)),
        f"frechet_{net.name}": metric(fid(real.features, fake.features), "", "estimate",
                                      protocol + "; Frechet distance of Gaussians fitted to the penultimate "
                                      "features (the FID formula)", n=n),
    }
