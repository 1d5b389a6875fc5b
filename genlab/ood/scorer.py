"""The per-image terms every OOD score is built from, for a run and an optional background run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.config import bounded, seed_field
from genlab.data.base import to_model_input
from genlab.errors import InputError
from genlab.ood.compress import COMPRESSORS, code_lengths
from genlab.ood.likelihood import FamilyLikelihood, LikelihoodOptions, family_likelihood
from genlab.ood.scores import SetTerms
from genlab.rng import sample_seed
from genlab.stats import bits_per_dim
from genlab.train.run import LoadedRun, load_run


@dataclass
class ScorerOptions:
    batch_size: int = bounded(256, ge=1)  # images per forward pass
    iwae_k: int = bounded(100, ge=1)  # importance samples per image for a VAE (its NLL is then an IWAE bound)
    iwae_chunk: int = bounded(100, ge=1)  # importance samples per decoder pass
    compressors: tuple[str, ...] = COMPRESSORS  # lossless compressors for the complexity scores
    seed: int = seed_field(0)  # seeds the importance samples


def describe_run(run: LoadedRun, lik: FamilyLikelihood) -> dict:
    info = {"dir": str(run.run_dir), "model": run.cfg.model_name, "family": run.model.card.family,
            "objective": run.cfg.objective_name, "data": run.cfg.data.name, "step": run.step,
            "weights": "ema" if run.used_ema else "raw", "likelihood_kind": lik.kind,
            "likelihood": lik.describe()}
    rate = getattr(run.cfg.objective, "mutation_rate", None)
    if rate is not None:
        info["mutation_rate"] = rate
    return info


class OutlierScorer:
    """A run's likelihood (and a background run's), turned into per-image terms in bits/dim."""

    def __init__(self, run: LoadedRun, background: LoadedRun | None, opts: ScorerOptions):
        self.run, self.background, self.opts = run, background, opts
        lopts = LikelihoodOptions(opts.iwae_k, opts.iwae_chunk)
        self.lik = family_likelihood(run.model, run.objective, lopts)
        self.bg_lik = None
        if background is not None:
            a, b = run.spec, background.spec
            if (a.channels, a.height, a.width, a.bits) != (b.channels, b.height, b.width, b.bits):
                raise InputError(f"the background run {background.run_dir} models {b.channels}x{b.height}x{b.width} "
                                 f"{b.bits}-bit images but the run models {a.channels}x{a.height}x{a.width} "
                                 f"{a.bits}-bit ones: train the background on the same data")
            self.bg_lik = family_likelihood(background.model, background.objective, lopts)
        self.spec = run.spec
        self.device = next(run.model.parameters()).device
        self.to_bpd = bits_per_dim(1.0, self.spec.dims)

    def describe(self) -> dict:
        return {"run": describe_run(self.run, self.lik),
                "background": None if self.background is None else describe_run(self.background, self.bg_lik)}

    @torch.no_grad()
    def terms(self, levels: torch.Tensor, transform: str, stream: int = 0, background: bool = True,
              log=None) -> SetTerms:
        """Per-image terms of images already in the model's format.

        Args:
            levels: uint8 (N, C, H, W): 0/1 for a binary model ("binary"), 0..255 for 8-bit ("scale").
            transform: "binary" or "scale".
            stream: which seeded stream of importance samples to use (one per set of images).
            background: also score under the background model (when there is one).
            log: optional callable for progress lines.
        """
        if transform not in ("binary", "scale"):
            raise InputError(f"images to score must be fixed levels ('binary' or 'scale'), not {transform!r}")
        n, bs = levels.shape[0], self.opts.batch_size
        g = torch.Generator(device=self.device).manual_seed(sample_seed(self.opts.seed, 2 * stream))
        g_bg = torch.Generator(device=self.device).manual_seed(sample_seed(self.opts.seed, 2 * stream + 1))
        nll, nll_bg = [], []
        use_bg = background and self.bg_lik is not None
        for start in range(0, n, bs):
            x = to_model_input(levels[start:start + bs].to(self.device), transform)
            nll.append(self.lik.nll(x, g).double().cpu())
            if use_bg:
                nll_bg.append(self.bg_lik.nll(x, g_bg).double().cpu())
            if log is not None and (start // bs) % 10 == 9:
                log(f"    {min(start + bs, n)}/{n} images")
        code = {c: code_lengths(levels.cpu(), self.spec.bits, c) / self.spec.dims for c in self.opts.compressors}
        return SetTerms(bpd=torch.cat(nll).numpy() * self.to_bpd, code_bpd=code,
                        background_bpd=torch.cat(nll_bg).numpy() * self.to_bpd if use_bg else None)

    @torch.no_grad()
    def pixel_nll(self, levels: torch.Tensor, transform: str) -> torch.Tensor:
        """(N, H, W) per-pixel surprise in nats (see ``self.lik.pixel_map_name`` for what it is)."""
        x = to_model_input(levels.to(self.device), transform)
        return self.lik.pixel_nll(x).cpu()


def load_scorer(run_dir: str | Path, background_dir: str | Path | None, opts: ScorerOptions, device,
                use_ema: bool = True, data_root: str | None = None) -> OutlierScorer:
    """Load a run (and its background run) and wrap them for scoring."""
    run = load_run(run_dir, device, use_ema=use_ema, data_root=data_root)
    bg = load_run(background_dir, device, use_ema=use_ema, data_root=data_root) if background_dir else None
    return OutlierScorer(run, bg, opts)
