"""The Python API: ``genlab.load``, ``genlab.train`` and the ``Run`` they return.

    run = genlab.load("runs/x")            # a run folder or a folder written by run.export / `genlab export`
    images = run.sample(16, seed=0)        # (16, C, H, W) floats in [0, 1], on the CPU
    nll = run.nll(x)                       # per-image NLL in nats and bits/dim, labelled exact or bound
    z = run.encode(x); x_hat = run.decode(z)
    run = genlab.train("vae", data="mnist", steps=1000, out="runs/x", latent_dim=2, optim__lr=1e-3)

The `genlab` commands call these same functions (``train_run``, ``draw``, ``evaluate_loaded``,
``report_loaded``, ``export_run``); nothing here is a second implementation of a command.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from genlab.errors import InputError
from genlab.card import conditioning
from genlab.config import COUNT, ConfigError, RunConfig, override_pairs
from genlab.data import load_dataset
from genlab.configs import resolve_train_config
from genlab.eval.exact import objective_nll
from genlab.eval.options import EvalOptions
from genlab.eval.run import evaluate_loaded
from genlab.nn.labels import class_labels
from genlab.nn.modes import eval_mode
from genlab.nn.spec import DataSpec
from genlab.ood.images import ImageReadError, background_of, read_user_levels
from genlab.ood.likelihood import LikelihoodOptions, family_likelihood
from genlab.registry import MODELS
from genlab.reports.export import export_run
from genlab.reports.ood import _out_names as distinct_stems  # photo.png twice -> photo, photo-2
from genlab.reports.report import report_loaded
from genlab.reports.translation import REVERSE, domain_names, write_translations
from genlab.sampling.api import draw
from genlab.sampling.latent import latent_means
from genlab.stats import bits_per_dim
from genlab.train.distributed import resolve_device
from genlab.train.loop import TrainResult
from genlab.train.loop import train as train_loop
from genlab.train.run import LoadedRun, load_run


class CapabilityError(InputError):
    """The model cannot do what was asked (encode without latents, a likelihood of a GAN...)."""


@dataclass(frozen=True)
class Capabilities:
    """What a loaded model can be asked for."""

    family: str
    samples: bool  # has a prior / generator to sample from
    likelihood: str | None  # "exact" | "bound" | None: the kind of run.nll
    encodes: bool  # x -> z
    decodes: bool  # z -> x
    num_classes: int  # > 0 for a class-conditional model


def capabilities(model) -> Capabilities:
    """Read a model's capabilities from its card (the one place in the API that does)."""
    card = model.card
    likelihood = None if card.likelihood == "none" else card.likelihood
    return Capabilities(card.family, bool(card.samplers), likelihood, encodes=card.encoder != "none",
                        decodes=card.decoder != "none",
                        num_classes=conditioning(model).num_classes)


@dataclass
class NLL:
    """Per-image negative log-likelihood of a batch, with what it is."""

    nats: torch.Tensor  # (B,) nats per image
    bits_per_dim: torch.Tensor  # (B,) nats / (D ln 2), D = C * H * W sub-pixels
    kind: str  # "exact" or "bound" (an upper bound on -log p(x))
    method: str  # how it was computed, in words


def _models_where(card_says) -> str:
    """The registered models whose card satisfies ``card_says(card)``, for error messages."""
    return ", ".join(name for name, cls in MODELS.items() if card_says(cls.card))


class Run:
    """A trained model, loaded from a run folder or an exported folder (``genlab.load``)."""

    def __init__(self, loaded: LoadedRun, device: torch.device):
        self._loaded, self.device = loaded, device
        self.caps = capabilities(loaded.model)

    # --- what it is
    @property
    def model(self) -> torch.nn.Module:
        return self._loaded.model

    @property
    def config(self) -> RunConfig:
        return self._loaded.cfg

    @property
    def spec(self) -> DataSpec:
        return self._loaded.spec

    @property
    def path(self) -> Path:
        return self._loaded.run_dir

    @property
    def step(self) -> int:
        return self._loaded.step

    @property
    def name(self) -> str:
        return self._loaded.cfg.model_name

    def __repr__(self) -> str:
        s = self.spec
        return (f"Run({str(self.path)!r}: {self.name} on {self.config.data.name} {s.channels}x{s.height}x{s.width}, "
                f"step {self.step}, {'EMA' if self._loaded.used_ema else 'raw'} weights, {self.device})")

    # --- inputs
    def _images(self, x, spec=None) -> torch.Tensor:
        """Model input (B, C, H, W) floats on the run's device from floats in [0, 1] or uint8 levels 0..255.

        ``spec``: the format the images must have (default the run's; one domain's for a translation).
        """
        x = torch.as_tensor(x)
        s = spec or self.spec
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if tuple(x.shape[1:]) != (s.channels, s.height, s.width):
            raise InputError(f"images of shape {tuple(x.shape)} do not fit this model: it takes "
                             f"(B, {s.channels}, {s.height}, {s.width})")
        if x.dtype == torch.uint8:
            x = x.float() / 255.0 if s.bits == 8 or x.max() > 1 else x.float()
        x = x.float()
        if x.min() < 0 or x.max() > 1:
            raise InputError("images must be floats in [0, 1] (or uint8 levels 0..255)")
        if s.bits == 1 and not torch.all((x == 0) | (x == 1)):
            raise InputError("this model is of binary images: give pixels of exactly 0 or 1 (binarize first)")
        return x.to(self.device)

    def _labels(self, label, n: int) -> torch.Tensor | None:
        if label is None:
            return None
        if not self.caps.num_classes:
            raise CapabilityError(f"{self.name} is unconditional: drop label=")
        return class_labels(label, n, self.caps.num_classes, self.device, who=self.name)

    # --- sampling
    def sample(self, n: int = 16, seed: int = 0, label: int | None = None, batch_size: int = 256,
               sampler: str | None = None, **sampler_options) -> torch.Tensor:
        """n samples (n, C, H, W) in [0, 1] on the CPU; sample i of seed s is the same whatever batch_size.

        Args:
            label: the class to draw, for a class-conditional model (None: a random class per sample).
            sampler: one of the samplers on the model's card (None: its first).
            sampler_options: that sampler's options (its dataclass in ``genlab.registry.SAMPLER_OPTIONS``, e.g.
                ``temperature=0.8`` for a VAE or a pixel model); an unknown option is an error.
        """
        return draw(self.model, n, seed, self.device, batch_size, label, sampler=sampler, **sampler_options)

    def translate(self, x, direction: str = "a2b", batch_size: int = 256) -> torch.Tensor:
        """A two-domain model's (cyclegan) translations (B, C, H, W) in [0, 1] on the CPU.

        Args:
            x: (B, C, H, W) or (C, H, W) images of the source domain, floats in [0, 1] or uint8.
            direction: a2b (the run's data.name -> data.domain_b) or b2a.
        """
        x = self._images(x, self.spec.domain("b" if direction == "b2a" else "a"))
        return draw(self.model, len(x), 0, self.device, batch_size, source=x, direction=direction)

    # --- likelihood
    @torch.no_grad()
    def nll(self, x, label: int | None = None, iwae_k: int = 100, seed: int = 0) -> NLL:
        """-log p(x) (or -log p(x | label)) per image, in nats and bits/dim, labelled exact or bound.

        Args:
            x: (B, C, H, W) or (C, H, W) images, floats in [0, 1] or uint8.
            label: class-conditional models: score p(x | label); None marginalizes over the classes.
            iwae_k: importance samples per image of a VAE's IWAE bound.
            seed: seeds the importance samples.
        """
        if self.caps.likelihood is None:
            raise CapabilityError(f"{self.name} gives no likelihood; models that do: "
                                  + ", ".join(n for n, c in MODELS.items() if c.card.likelihood == "exact")
                                  + " (exact), vae (bound)")
        x = self._images(x)
        y = self._labels(label, x.shape[0])
        generator = torch.Generator(device=self.device).manual_seed(seed)
        if y is not None and self.model.card.family == "latent":  # a conditional VAE
            nats = family_likelihood(self.model, self._loaded.objective, LikelihoodOptions(iwae_k=iwae_k)).nll_given(
                x, y, generator)
            method = f"IWAE upper bound on -log p(x | y) (Burda et al. 2016), k={iwae_k} importance samples per image"
        elif y is not None:
            nats = objective_nll(self.model, self._loaded.objective, {"x": x, "y": y})
            method = "exact chain-rule NLL -log p(x | y) (objective term nll_nats)"
        else:
            lik = family_likelihood(self.model, self._loaded.objective, LikelihoodOptions(iwae_k=iwae_k))
            nats = lik.nll(x, generator)
            method = lik.describe()
        nats = nats.double().cpu()
        return NLL(nats, bits_per_dim(nats, self.spec.dims), self.caps.likelihood, method)

    def log_prob(self, x, label: int | None = None, iwae_k: int = 100, seed: int = 0) -> torch.Tensor:
        """log p(x) in nats per image, (B,); a lower bound for a VAE (see ``nll`` for the label)."""
        return -self.nll(x, label, iwae_k, seed).nats

    # --- latents
    @torch.no_grad()
    def encode(self, x, label: int | None = None) -> torch.Tensor:
        """Codes (B, latent_dim): a VAE's posterior mean (of q(z | x, label) for a conditional VAE, which needs
        the label), an autoencoder's code, a BiGAN encoder's E(x)."""
        if not self.caps.encodes:
            raise CapabilityError(f"{self.name} has no encoder (no latents to encode into); models with one: "
                                  f"{_models_where(lambda card: card.encoder != 'none')}")
        x = self._images(x)
        return latent_means(self.model, x, self._labels(label, x.shape[0])).cpu()

    @torch.no_grad()
    def decode(self, z, label: int | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] from codes (B, latent_dim): the decoder's mean image, or G(z)."""
        if not self.caps.decodes:
            raise CapabilityError(f"{self.name} has no latents to decode; models with a decoder or generator: "
                                  f"{_models_where(lambda card: card.decoder != 'none')}")
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        z = z.unsqueeze(0) if z.dim() == 1 else z
        if self.model.card.decoder == "autoregressive":
            raise CapabilityError(f"{self.name}'s decoder is autoregressive: it has no mean image; draw images "
                                  "with run.sample (pixel_samples_per_latent=...)")
        if self.model.card.decoder == "distribution":
            y = self._labels(label, z.shape[0])  # a conditional VAE decodes p(x | z, label)
            return self.model.distribution(self.model.decode(z, y=y)).mean().cpu()
        with eval_mode(self.model):
            return self.model.generate(z, self._labels(label, z.shape[0])).cpu()

    # --- evaluation, reports, export
    def evaluate(self, only: list[str] | None = None, log=print, **options) -> dict:
        """Run the model's evaluators (or ``only`` these); merges into RUN_DIR/eval.json and returns it.

        Args:
            options: ``EvalOptions`` fields, e.g. ``protocol="paper"`` or ``max_examples=1000, iwae_k=100``.
        """
        valid = {f.name for f in fields(EvalOptions)} - {"data", "figure_dir", "state_dir", "log"}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(f"unknown evaluation option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        # protocol="paper" sets the protocol's sizes; the other options override them.
        opts = EvalOptions.for_protocol(options.pop("protocol", "quick"), **options)
        return evaluate_loaded(self._loaded, opts, self.device, only, log)

    def report(self) -> tuple[Path, Path]:
        """Write RUN_DIR/report.md and report.html (figures, eval table, config); returns both paths."""
        return report_loaded(self._loaded, self.device)

    def export(self, folder: str | Path) -> Path:
        """Write a self-contained folder (safetensors weights, config JSON, README.md model card) that
        ``genlab.load(folder)`` reads on any machine; returns the folder."""
        return export_run(self._loaded, folder)


def load(path: str | Path, device: str = "auto", use_ema: bool = True, data_root: str | None = None,
         compile: str | None = None) -> Run:
    """Load a trained model from a run folder (`genlab train --out`) or an exported folder.

    Args:
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
        use_ema: the EMA weights when the run kept them.
        data_root: where the datasets are, for ``evaluate`` and ``report`` (default $GENLAB_DATA).
        compile: None (default) runs the networks eagerly; a torch.compile mode compiles each of them for
            every later use, as ``train.compile`` does in training: "default", or "reduce-overhead" to replay
            each network as one CUDA graph on a GPU, where a small network's time is the host launching its
            kernels. The first call at each batch size compiles (about a minute on a CPU); README, "Compiled sampling".
    """
    dev = resolve_device(device)
    return Run(load_run(path, dev, use_ema=use_ema, data_root=data_root, compile=compile), dev)


def _python_call(name: str, args: tuple, kwargs: dict) -> str:
    """How a Python call reads, for RUN_DIR/command.txt."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items() if v is not None]
    return f"genlab.{name}({', '.join(parts)})"


def keyword_overrides(kw: dict) -> dict:
    """``latent_dim=2, optim__lr=1e-3`` -> {"latent_dim": 2, "optim.lr": 1e-3} (``__`` stands for the dot)."""
    return {k.replace("__", "."): v for k, v in kw.items()}


def train_run(model: str | None = None, *, out: str | Path | None = None, resume: str | Path | None = None,
              preset: str | None = None, data: str | None = None, steps: int | None = None,
              until_step: int | None = None, seed: int | None = None, device: str | None = None,
              batch_size: int | None = None, data_root: str | None = None, overrides=(),
              command: str | None = None) -> TrainResult:
    """Train a new run into ``out``, or continue the run ``resume``: what `genlab train` does.

    Returns:
        The loop's TrainResult (step reached, seconds, skipped steps, interrupted).
    """
    COUNT.check("until_step", until_step, int)
    if resume:
        if model or out or preset or overrides:
            raise ConfigError("resuming takes the run's own configuration: give only the run folder "
                              "(and optionally steps, until_step)")
        return train_loop(None, resume, resume=True, until_step=until_step, total_steps=steps)
    cfg = resolve_train_config(model, preset=preset, data=data, steps=steps, seed=seed, device=device,
                               batch_size=batch_size, data_root=data_root, overrides=overrides)
    if not out:
        raise ConfigError("give a run folder: --out RUN_DIR (out= in Python)")
    return train_loop(cfg, out, until_step=until_step, command=command)


def train(model: str | None = None, data: str | None = None, steps: int | None = None,
          out: str | Path | None = None, *, preset: str | None = None, seed: int | None = None,
          device: str | None = None, batch_size: int | None = None, data_root: str | None = None,
          overrides=(), until_step: int | None = None, resume: str | Path | None = None, **kw) -> Run:
    """Train a model from Python and return the loaded run (no argparse involved).

    Args:
        model: a name from `genlab models`; optional with ``preset``.
        data: a name from `genlab data list` (default: the preset's, else digits).
        out: the run folder to create.
        preset: a name from `genlab models --presets`.
        overrides: "key=value" strings or a {key: value} dict, as `--set`.
        resume: continue this run folder instead (then give only ``steps`` / ``until_step``).
        kw: further overrides as keywords: ``latent_dim=2``, ``optim__lr=1e-3`` (``__`` for the dot).
    Example:
        run = genlab.train("vae", data="digits", steps=200, out="runs/v", latent_dim=2)
    """
    given = dict(model=model, data=data, steps=steps, out=None if out is None else str(out), preset=preset,
                 seed=seed, device=device, batch_size=batch_size, until_step=until_step, **kw)
    if overrides:
        given["overrides"] = overrides
    pairs = override_pairs(overrides) + list(keyword_overrides(kw).items())
    result = train_run(model, out=out, resume=resume, preset=preset, data=data, steps=steps, until_step=until_step,
                       seed=seed, device=device, batch_size=batch_size, data_root=data_root, overrides=pairs,
                       command=_python_call("train", (), given))
    return load(result.run_dir, device or "auto", data_root=data_root)


def translate_files(run_dir: str | Path, images: list[str | Path], direction: str = "a2b",
                    out_dir: str | Path | None = None, alpha_over: str = "auto", device: str = "auto",
                    data_root: str | None = None, use_ema: bool = True, log=print) -> list[Path]:
    """`genlab translate`: a two-domain run's translations of image files; returns the translated PNGs.

    Each file is brought to the run's format by genlab's safe image conversion (``genlab.ood.images``:
    Pillow decoding only, 16-bit /257, alpha over the source domain's background colour, luma or RGB,
    centre crop and resize), then translated (``reports.translation.write_translations``).

    Args:
        run_dir: a run (or exported) folder of an image-to-image model (cyclegan).
        images: PNG/JPEG/... files of any size and mode.
        direction: a2b (domain A = the run's data.name, to data.domain_b) or b2a.
        out_dir: where the PNGs go (default RUN_DIR/translations).
        alpha_over: "black", "white" or "auto" (the border colour of the source domain's test images).
    Raises:
        ImageReadError: a file cannot be read (the message names it); nothing is written then.
    """
    if direction not in REVERSE:
        raise InputError(f"--direction must be a2b or b2a, not {direction!r}")
    paths = [Path(p) for p in images]
    if not paths:
        raise InputError("give at least one image file")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ImageReadError(f"cannot read image {missing[0]}: no such file")
    dev = resolve_device(device)
    run = load_run(run_dir, dev, use_ema=use_ema, data_root=data_root)
    if not conditioning(run.model).source_image:
        raise InputError(f"{run.run_dir} holds a {run.cfg.model_name} model, which does not translate images; "
                         "give a cyclegan run")
    source, target = domain_names(run.cfg, direction)
    if alpha_over == "auto":
        alpha_over = background_of(load_dataset(source, "test", run.cfg.data))
    source_spec = run.spec.domain("a" if direction == "a2b" else "b")  # the domains may differ in channels
    x = torch.stack([read_user_levels(p, source_spec, alpha_over) for p in paths]).float() / 255  # (N, C, H, W)
    out = Path(out_dir) if out_dir is not None else run.run_dir / "translations"
    written = write_translations(run.model, x, distinct_stems(paths), direction, out, dev)
    log(f"{len(written)} translation(s) {direction} ({source} -> {target}) in {out}; "
        f"rows of translations_{direction}.png: input, translation, reconstruction")
    return written
