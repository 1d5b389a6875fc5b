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


def _hour_budget(data: str) -> dict[str, str]:
    # The same 0.28 M-weight U-Net as ddpm-mnist, trained for about an hour of one core (9,000 steps of
    # 64, about 10 epochs): a wider net (channels 24) was 2.1x slower per image on one thread, so the
    # hour buys more epochs of the small net. Cosine decay to 5 % of the rate and an EMA that warms up
    # to 0.999 (half-life about 700 steps) so the last epochs are averaged, not the first.
    return {**_ddpm_mnist(), "data.name": data, "train.steps": "9000", "optim.schedule": "cosine",
            "optim.min_lr_ratio": "0.05", "train.ema_decay": "0.999", "train.ema_warmup": "count",
            "train.threads": "1", "train.ckpt_every": "1000", "train.log_every": "250"}


@preset("ddpm-mnist-hour")
def ddpm_mnist_hour():
    """DDPM on MNIST for about one hour of one CPU core (9,000 steps): the FID-against-NFE table's run."""
    return _hour_budget("mnist")


@preset("ddpm-fashion-mnist-hour")
def ddpm_fashion_mnist_hour():
    """DDPM on Fashion-MNIST for about one hour of one CPU core (9,000 steps): the FID-against-NFE table's run."""
    return _hour_budget("fashion-mnist")


@preset("iddpm-mnist")
def iddpm_mnist():
    """Improved DDPM (Nichol & Dhariwal 2021) on MNIST, CPU-sized like ddpm-mnist: cosine schedule, learned
    variance, L_hybrid = L_simple + 0.001 L_vlb (the parameterization of the likelihood results)."""
    return {**_ddpm_mnist(), "model.schedule": "cosine", "model.variance": "learned", "objective.vlb_weight": "0.001",
            "train.ema_warmup": "count"}


@preset("edm-mnist")
def edm_mnist():
    """EDM (Karras et al. 2022) on MNIST, CPU-sized like ddpm-mnist: preconditioned denoiser, log-normal
    sigma (P_mean -1.2, P_std 1.2), sigma_data 0.5; sample it with `--sampler heun --set steps=18`."""
    return {**_ddpm_mnist(), "model.parameterization": "edm", "train.ema_warmup": "halflife"}


# Paper-sized networks for a GPU (not run on the 2-core CPU): widths 64-128-128 with two residual
# blocks per level and attention at 14x14 and 7x7, 6.8 M weights, Adam at 2e-4 as in the papers.
_GPU_NET = {"model.channels": "64", "model.mult": "1,2,2", "model.blocks": "2", "model.attention_resolutions": "14,7",
            "model.dropout": "0.1", "optim.lr": "2e-4", "train.batch_size": "128", "train.ema_decay": "0.9999",
            "train.ema_warmup": "count", "train.ckpt_every": "5000", "train.log_every": "500"}


@preset("ddpm-mnist-gpu")
def ddpm_mnist_gpu():
    """DDPM on MNIST at paper width for a GPU (100,000 steps of 128): the FID-against-NFE run at full size."""
    return {**_ddpm_mnist(), **_GPU_NET, "train.steps": "100000"}


@preset("iddpm-mnist-gpu")
def iddpm_mnist_gpu():
    """Improved DDPM on 8-bit MNIST for a GPU, aimed at <= 1.0 bits/dim by the variational bound (T = 4000
    as iDDPM's likelihood runs; 200,000 steps of 128)."""
    return {**iddpm_mnist(), **_GPU_NET, "model.timesteps": "4000", "train.steps": "200000"}


@preset("iddpm-binarized-mnist-gpu")
def iddpm_binarized_mnist_gpu():
    """Improved DDPM on static binarized MNIST for a GPU, aimed at a bound below 80 nats (the decoder at
    t = 0 is a two-level discrete likelihood, so the bound is in true nats); 200,000 steps of 128."""
    return {**iddpm_mnist_gpu(), "data.name": "binarized-mnist"}
