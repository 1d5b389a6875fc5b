"""genlab: train, sample, evaluate and compare deep generative models of images."""

__version__ = "0.1.0"

# Importing the families fills the registries (models, objectives, samplers, evaluators, datasets).
from genlab import data, models, objectives, sampling, eval, reports  # noqa: E402,F401
from genlab.eval import latent as _eval_latent  # noqa: E402,F401
from genlab.reports import figures as _figures  # noqa: E402,F401
from genlab.eval import adversarial as _eval_adversarial  # noqa: E402,F401
from genlab.eval import sample_metrics as _eval_samples, memorization as _eval_memorization  # noqa: E402,F401
from genlab.eval import exact as _eval_exact  # noqa: E402,F401
from genlab import ood as _ood  # noqa: E402,F401  (registers elbo-mutated / nll-mutated)
