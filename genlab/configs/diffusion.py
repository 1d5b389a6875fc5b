"""Presets of the diffusion model, named after the papers, sized for a CPU."""

from genlab.configs import preset


def _ddpm_mnist() -> dict[str, str]:
    # Ho et al. 2020's recipe (linear schedule, T = 1000, eps prediction, L_simple, beta~ variance,
    # EMA) with a U-Net of 0.28 M weights instead of 35 M: 28 -> 14 -> 7, widths 16-32-32, attention
    # at 7x7, and Adam at 1e-3 (not 2e-4) so that 2,400 steps of 64 images (about 2.6 epochs, the
    # CPU budget of the README row: about 0.4 s a step on one core) get somewhere.
    return {"model": "diffusion", "data.name": "mnist", "model.channels": "16", "model.mult": "1,2,2",
            "model.blocks": "1", "model.attention_resolutions": "7", "model.dropout": "0.1",
            "train.batch_size": "64", "train.steps": "2400", "train.ema_decay": "0.995", "optim.lr": "1e-3",
            "train.ckpt_every": "500", "train.log_every": "100"}


@preset("ddpm-mnist")
def ddpm_mnist():
    """DDPM (Ho et al. 2020) on MNIST, sized for a 2-core CPU (about 20 minutes)."""
    return _ddpm_mnist()


@preset("ddpm-mnist-cond")
def ddpm_mnist_cond():
    """Class-conditional DDPM on MNIST with classifier-free guidance training (p_uncond 0.1, Ho & Salimans 2022).

    The EMA warms up (decay min(0.995, (1 + n) / (10 + n)) at update n), so a CPU-budget run's EMA
    weights are not a blend with the initialization.
    """
    return {**_ddpm_mnist(), "model.conditional": "true", "objective.p_uncond": "0.1", "train.ema_warmup": "count"}
