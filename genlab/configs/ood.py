"""Presets of the out-of-distribution experiments (benchmarks/ood_table.py).

Nalisnick et al. 2019, "Do Deep Generative Models Know What They Don't Know?"
(arXiv:1810.09136): a model trained on Fashion-MNIST assigns MNIST digits a
higher likelihood than its own test set. Each in-distribution model has a
background twin for the likelihood ratio of Ren et al. 2019 (arXiv:1906.02845):
the same architecture, data and steps, trained with the "*-mutated" objective
(``genlab/ood/background.py``).

Sized for a shared 2-core CPU (one thread each): the VAE takes about 7 steps/s,
so 4000 steps are about 10 minutes; the PixelCNN about 10-15 minutes.
"""

from genlab.configs import preset
from genlab.ood import background  # noqa: F401  (registers the *-mutated objectives the presets name)

MUTATION_RATE = "0.2"  # Ren et al. search mu in 0.1-0.3; the middle, not tuned on any OOD set


def _vae(data: str) -> dict:
    # A small convolutional VAE with the discretized logistic likelihood of 8-bit pixels.
    return {"model": "vae", "data.name": data, "model.latent_dim": "16", "model.channels": "16,32",
            "model.blocks": "0", "model.hidden": "256", "model.likelihood": "logistic",
            "train.batch_size": "64", "train.steps": "4000", "optim.lr": "1e-3", "optim.schedule": "cosine",
            "train.log_every": "100", "train.ckpt_every": "1000"}


def _pixelcnn(data: str) -> dict:
    # A small PixelCNN with the 256-way softmax of the paper.
    return {"model": "pixelcnn", "data.name": data, "model.likelihood": "categorical", "model.channels": "32",
            "model.residual_blocks": "4", "model.head_channels": "64", "train.batch_size": "32",
            "train.steps": "2000", "optim.lr": "1e-3", "optim.schedule": "cosine", "train.log_every": "100",
            "train.ckpt_every": "1000"}


def _background(base: dict, objective: str) -> dict:
    return {**base, "objective": objective, "objective.mutation_rate": MUTATION_RATE}


@preset("ood-vae-fashion-mnist")
def ood_vae_fashion_mnist():
    """VAE on 8-bit Fashion-MNIST for the Nalisnick et al. 2019 OOD failure (MNIST gets higher likelihood)."""
    return _vae("fashion-mnist")


@preset("ood-vae-fashion-mnist-background")
def ood_vae_fashion_mnist_background():
    """Background VAE on Fashion-MNIST with 20% of sub-pixels mutated, for the likelihood ratio (Ren et al. 2019)."""
    return _background(ood_vae_fashion_mnist(), "elbo-mutated")


@preset("ood-vae-mnist")
def ood_vae_mnist():
    """VAE on 8-bit MNIST, the reverse OOD direction (Fashion-MNIST as outliers)."""
    return _vae("mnist")


@preset("ood-vae-mnist-background")
def ood_vae_mnist_background():
    """Background VAE on MNIST with 20% of sub-pixels mutated, for the likelihood ratio (Ren et al. 2019)."""
    return _background(ood_vae_mnist(), "elbo-mutated")


@preset("ood-pixelcnn-fashion-mnist")
def ood_pixelcnn_fashion_mnist():
    """Small PixelCNN on 8-bit Fashion-MNIST (exact likelihood) for the Nalisnick et al. 2019 failure."""
    return _pixelcnn("fashion-mnist")


@preset("ood-pixelcnn-fashion-mnist-background")
def ood_pixelcnn_fashion_mnist_background():
    """Background PixelCNN on Fashion-MNIST with 20% of sub-pixels mutated (Ren et al. 2019)."""
    return _background(ood_pixelcnn_fashion_mnist(), "nll-mutated")


@preset("ood-pixelcnn-mnist")
def ood_pixelcnn_mnist():
    """Small PixelCNN on 8-bit MNIST, the reverse OOD direction."""
    return _pixelcnn("mnist")


@preset("ood-pixelcnn-mnist-background")
def ood_pixelcnn_mnist_background():
    """Background PixelCNN on MNIST with 20% of sub-pixels mutated (Ren et al. 2019)."""
    return _background(ood_pixelcnn_mnist(), "nll-mutated")
