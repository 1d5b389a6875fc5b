"""Presets of the adversarial models, one per reproduced result."""

from genlab.configs import preset


def _dcgan(data: str) -> dict[str, str]:
    # Radford et al. 2016's optimiser (Adam, lr 2e-4, beta1 0.5) and z ~ U[-1, 1]^100 come from the model's
    # run defaults; minibatch 64 and 2,500 steps (about 2.7 epochs) are the CPU budget of the README's FID table
    # (about 6 minutes per run on one core). Checkpoints every 500 steps let a crashed run resume.
    return {"model": "dcgan", "data.name": data, "model.width": "64", "train.batch_size": "64",
            "train.steps": "2500", "train.ckpt_every": "500", "train.log_every": "100",
            "objective.loss": "nonsaturating"}


@preset("dcgan-mnist")
def dcgan_mnist():
    """DCGAN on MNIST (28x28), non-saturating loss; `--set loss=...` and `--set upsample=...` for the FID table."""
    return _dcgan("mnist")


@preset("dcgan-fashion-mnist")
def dcgan_fashion_mnist():
    """DCGAN on Fashion-MNIST (28x28), non-saturating loss; the FID table varies loss, upsampling and seed."""
    return _dcgan("fashion-mnist")


@preset("cgan-mnist")
def cgan_mnist():
    """Class-conditional DCGAN (projection discriminator) on MNIST: `genlab sample RUN --label 7` draws sevens."""
    # About 5.3 epochs: 14 minutes on one CPU core (README results).
    return {**_dcgan("mnist"), "model": "cgan", "train.steps": "5000"}


@preset("bigan-mnist")
def bigan_mnist():
    """BiGAN on MNIST (latent 50, normal prior, deterministic encoder): reconstruction and linear-probe results."""
    # The encoder only learns to invert G once G is good, so BiGAN gets more steps than DCGAN: 6,000 steps
    # (6.4 epochs), 39 minutes on one CPU core (README results).
    return {**_dcgan("mnist"), "model": "bigan", "train.steps": "6000", "train.ckpt_every": "1000"}
