"""Translation figures of a two-domain model (cyclegan): `genlab report`'s test-set figures and the files of
`genlab translate` (OUT/<name>_<direction>.png and OUT/translations_<direction>.png, with a row each for the
inputs, their translations and the reconstructions, i.e. the translations mapped back)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from genlab.data import load_dataset
from genlab.reports.images import save_strip
from genlab.sampling.api import draw

REVERSE = {"a2b": "b2a", "b2a": "a2b"}


def domain_names(cfg, direction: str) -> tuple[str, str]:
    """(source, target) dataset names of a direction of a two-domain run."""
    a, b = cfg.data.name, cfg.data.domain_b
    return (a, b) if direction == "a2b" else (b, a)


def save_translation_strip(model, x: torch.Tensor, direction: str, path: Path, device) -> torch.Tensor:
    """Translate ``x`` (N, C, H, W) in [0, 1]; save rows input / translation / reconstruction; return the translations."""
    fake = draw(model, len(x), seed=0, device=device, source=x, direction=direction)
    back = draw(model, len(x), seed=0, device=device, source=fake, direction=REVERSE[direction])
    rows = [x.cpu(), fake, back]
    channels = max(r.shape[1] for r in rows)  # grey rows are shown as RGB beside a colour domain
    save_strip(torch.stack([r.expand(-1, channels, -1, -1) for r in rows]), path)
    return fake


def translation_figures(run, out_dir: Path, device) -> list[tuple[str, str]]:
    """`genlab report` of a two-domain run: 16 test images of each domain, translated and mapped back."""
    figs = []
    for direction in REVERSE:
        source, target = domain_names(run.cfg, direction)
        test = load_dataset(source, "test", run.cfg.data)
        x = test.batch(torch.arange(min(16, len(test))), torch.Generator().manual_seed(0))["x"]
        name = f"translations_{direction}.png"
        save_translation_strip(run.model, x, direction, out_dir / name, device)
        figs.append((f"{direction}: the first test images of {source} (top row), their translations to {target} "
                     "(middle) and the reconstructions mapped back (bottom)", name))
    return figs


def write_translations(model, x: torch.Tensor, names: list[str], direction: str, out: Path, device) -> list[Path]:
    """Translate images ``x`` (N, C, H, W) in [0, 1]; write OUT/<name>_<direction>.png for each and the strip
    OUT/translations_<direction>.png (rows: input, translation, reconstruction). Returns the per-image files."""
    out.mkdir(parents=True, exist_ok=True)
    fake = save_translation_strip(model, x, direction, out / f"translations_{direction}.png", device)
    written = []
    for name, image in zip(names, fake):
        file = out / f"{name}_{direction}.png"
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(file)
        written.append(file)
    return written
