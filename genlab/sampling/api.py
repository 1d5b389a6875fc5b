"""Drawing samples from a trained run: `genlab sample`."""

from __future__ import annotations

from pathlib import Path

import torch

from genlab.registry import SAMPLERS
from genlab.sampling.generators import make_generators


def sampler_of(model, name: str | None = None):
    """The sampler function named ``name`` on the model's card (default: the card's first)."""
    if not model.card.samplers:
        raise ValueError(f"{type(model).__name__} has no prior to sample from (an autoencoder reconstructs and "
                         "interpolates only); train a vae to sample")
    return SAMPLERS.get(model.card.sampler(name).name)


@torch.no_grad()
def draw(model, n: int, seed: int, device, batch_size: int = 256, label: int | None = None, start: int = 0,
         **opts) -> torch.Tensor:
    """Samples ``start .. start + n - 1`` of the stream seeded ``seed``, in batches; (n, C, H, W) on CPU."""
    sample_fn = sampler_of(model)
    num_classes = model.data.num_classes
    if label is not None and not (0 <= label < max(num_classes, 1)):
        raise ValueError(f"--label {label} is out of range: this model's data has {num_classes} classes")
    out = []
    for first in range(start, start + n, batch_size):
        count = min(batch_size, start + n - first)
        gens = make_generators(seed, count, device, start=first)
        out.append(sample_fn(model, count, gens, device, label=label, **opts).float().cpu())
    return torch.cat(out)


def sample_run(run_dir: str | Path, n: int, out: str | Path, seed: int = 0, device: str = "auto",
               label: int | None = None, use_ema: bool = True, batch_size: int = 256, data_root: str | None = None,
               **opts) -> Path:
    """Load a run, draw n samples and save them as one image grid."""
    from genlab.reports.images import save_grid
    from genlab.train.distributed import resolve_device
    from genlab.train.run import load_run

    dev = resolve_device(device)
    run = load_run(run_dir, dev, use_ema=use_ema, data_root=data_root)
    images = draw(run.model, n, seed, dev, batch_size, label, **opts)
    return save_grid(images, out)
