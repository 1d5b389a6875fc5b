"""Presets of the adversarial models, one per reproduced result."""

from genlab.configs import preset


def _dcgan(data: str) -> dict[str, str]:
    # Radford et al. 2016's optimiser (Adam, lr 2e-4, beta1 0.5) and z ~ U[-1, 1]^100 come from the model's
    # run defaults; minibatch 64 and 2,500 steps (about 2.7 epochs) are the CPU budget of the README's FID table
    # (about 6 minutes per run on one core). Checkpoints every 500 steps let a crashed run resume.
    return {"model": "dcgan", "data.name": data, "model.width": "64", "train.batch_size": "64",
            "train.steps": "2500", "train.ckpt_every": "500", "train.log_every": "100",
            "objective.loss": "nonsaturating"}


def _cgan(data: str) -> dict[str, str]:
    # About 5.3 epochs: 14 minutes on one CPU core (README results).
    return {**_dcgan(data), "model": "cgan", "train.steps": "5000"}


def _bigan(data: str) -> dict[str, str]:
    # The encoder only learns to invert G once G is good, so BiGAN gets more steps than DCGAN: 6,000 steps
    # (6.4 epochs), 39 minutes on one CPU core (README results).
    return {**_dcgan(data), "model": "bigan", "train.steps": "6000", "train.ckpt_every": "1000"}


def _per_dataset(family: str, overrides, summary: str) -> None:
    """Register FAMILY-mnist and FAMILY-fashion-mnist from one builder of overrides; SUMMARY names {data}."""
    for data, title in (("mnist", "MNIST"), ("fashion-mnist", "Fashion-MNIST")):
        def make(data: str = data) -> dict[str, str]:
            return overrides(data)

        make.__name__ = f"{family}_{data.replace('-', '_')}"
        make.__doc__ = summary.format(data=title)
        preset(f"{family}-{data}")(make)


_per_dataset("dcgan", _dcgan,
             "DCGAN on {data} (28x28), non-saturating loss; `--set loss=...` and `--set upsample=...` for the FID table.")
_per_dataset("cgan", _cgan, "Class-conditional DCGAN (projection discriminator) on {data}: "
                            "`genlab sample RUN --label 7` draws class 7.")
_per_dataset("bigan", _bigan,
             "BiGAN on {data} (latent 50, normal prior, deterministic encoder; `--set encoder=gaussian` for ALI).")


def _progan(data: str) -> dict[str, str]:
    # A CPU-sized progressive GAN: 4 -> 8 -> 16 -> 32 (28x28 padded to 32x32), 200 steps per fade-in and per
    # stabilization at batch 32 (6,400 images each; the paper shows 600k), channels min(64, 256 / side)
    # (64, 32, 16, 8; the paper has 512 throughout), z of 64. The full schedule is 4 x 200 + 3 x 200 = 1,400 steps
    # (44,800 images, 0.75 epoch), about 10 minutes on one busy core. The non-saturating loss, because WGAN-GP's
    # double backward costs twice as much here; `--set loss=wasserstein penalty=wgan-gp drift=0.001` for the paper's.
    return {"model": "progan", "data.name": data, "model.latent_dim": "64", "model.fmap_base": "256",
            "model.fmap_max": "64", "model.fade_steps": "200", "model.stable_steps": "200",
            "train.batch_size": "32", "train.steps": "1400", "train.ckpt_every": "200", "train.log_every": "50",
            "objective.loss": "nonsaturating", "objective.penalty": "none", "objective.drift": "0"}


_per_dataset("progan", _progan, "Progressive GAN on {data} (padded to 32x32, grown 4 -> 32), CPU-sized: "
                                "`genlab report` shows samples at each resolution.")


def _cyclegan(domain_b: str) -> dict[str, str]:
    # A CPU budget for 28x28 digits: 16-channel translators with 3 residual blocks, batch 16 (the paper: 64
    # channels, 9 blocks, batch 1 at 256x256), 800 steps (12,800 images of each domain, 0.43 epochs of the
    # 30,000-image halves) with the paper's lr 2e-4 constant for the first half then linearly to 0 (model
    # run defaults). README results: 20 minutes on the shared 2-core CPU.
    return {"model": "cyclegan", "data.name": "mnist", "data.domain_b": domain_b, "model.width": "16",
            "model.n_blocks": "3", "model.d_width": "16", "train.batch_size": "16", "train.steps": "800",
            "train.ckpt_every": "500", "train.log_every": "50"}


for _name, _domain, _what in (("inverted", "mnist-inverted", "colour-inverted MNIST"),
                              ("thick", "mnist-thick", "MNIST with thickened strokes"),
                              ("rot90", "mnist-rot90", "MNIST rotated by 90 degrees"),
                              ("digits", "digits-28", "scikit-learn's 8x8 digits upsampled to 28x28 (other writers)"),
                              ("fashion", "fashion-mnist", "Fashion-MNIST (no true correspondence)")):
    def _make(domain: str = _domain) -> dict[str, str]:
        return _cyclegan(domain)

    _make.__name__ = "cyclegan_" + _domain.replace("-", "_")
    _make.__doc__ = f"CycleGAN MNIST <-> {_what}, unpaired; `genlab translate RUN IMG --direction a2b|b2a`."
    preset("cyclegan-mnist-" + _name)(_make)


@preset("cyclegan-mnist-colour")
def cyclegan_mnist_colour() -> dict[str, str]:
    """CycleGAN grey MNIST <-> coloured MNIST (3 channels); no identity loss: the domains differ in format.

    4,000 steps, five times the other pairs': at 800 steps grey -> colour gives noisy colour fields that the
    MNIST LeNet reads at chance (label preservation 9.1 %, 3 seeds), at 4,000 steps coloured digits (73.2 +- 5.4 %,
    3 seeds; README, "Unpaired translation"). About 22 minutes on one thread of a shared 2-core CPU."""
    return {**_cyclegan("mnist-colour"), "objective.lambda_idt": "0", "train.steps": "4000"}
