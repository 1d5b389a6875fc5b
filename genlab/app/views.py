"""What each view of `genlab app` computes. Every number and image comes from genlab's own functions: samples
from ``sampling.api.draw`` (what ``Run.sample`` and `genlab sample` call), codes and images from ``Run.encode`` /
``Run.decode`` and ``sampling.latent``, completions from ``sampling.autoregressive.complete`` and the
`genlab complete` figure, outlier scores from ``ood.user.score_user_images`` (what `genlab score` calls) and the
comparison page from ``reports.compare.compare_runs`` (what `genlab compare` calls). Nothing here samples, scores
or compares by itself; it turns requests into those calls and their results into PNG bytes and JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from genlab.api import Run
from genlab.card import conditioning
from genlab.data import load_dataset
from genlab.data.base import to_model_input
from genlab.errors import InputError
from genlab.nn.modes import eval_mode
from genlab.ood.images import background_of, read_user_image
from genlab.ood.run import IN_SET, read_ood_scores
from genlab.ood.user import score_user_images
from genlab.reports.autoregressive import save_completion_figure
from genlab.reports.compare import compare_runs
from genlab.reports.images import grid_array, save_panels, subplots
from genlab.reports.ood import save_surprise
from genlab.rng import random_subset
from genlab.sampling.api import draw, option_fields, sampler_options
from genlab.sampling.autoregressive import complete
from genlab.sampling.latent import interpolate, manifold_code, manifold_grid

MAX_SAMPLES = 256  # per request: a grid the page can show
PROGRESS_STEPS = 8  # a request is drawn in this many pieces, so the page can show how far it is
MANIFOLD_TILES = 15  # rows and columns of the 2-D manifold image
SLIDER_DIMS = 8  # sliders for the leading latent dimensions


@dataclass
class AppRun:
    """One run the app serves: the loaded model, a lock so one request at a time uses its network, its test set."""

    key: str
    run: Run
    label: str = ""  # the folder name, as `genlab compare` heads its columns
    use_ema: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)
    _test = None
    _background: str | None = None

    @property
    def transform(self) -> str:
        return "binary" if self.run.spec.bits == 1 else "scale"

    def test_set(self):
        if self._test is None:
            cfg = self.run.config.data
            self._test = load_dataset(cfg.name, "test", cfg)
        return self._test

    def background(self) -> str:
        """"black" or "white": what transparent pixels of an upload become (the border colour of the test images)."""
        if self._background is None:
            self._background = background_of(self.test_set())
        return self._background


# --- images to bytes

def png_bytes(images: torch.Tensor, nrow: int | None = None, scale: int | None = None,
              text: dict[str, str] | None = None) -> bytes:
    """(N, C, H, W) in [0, 1] -> a PNG of the grid `genlab sample` writes (same pixels), with text chunks."""
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buf = io.BytesIO()
    Image.fromarray(grid_array(images, nrow, scale=scale)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    path.unlink()
    return data


# --- what a run offers

def run_info(ar: AppRun) -> dict:
    """The run as the page needs it: what it is, which views apply, its samplers with their typed options."""
    run, model = ar.run, ar.run.model
    cond = conditioning(model)
    card = model.card
    latent = run.caps.encodes and run.caps.decodes and card.decoder == "distribution"
    samplers = []
    if run.caps.samples and not cond.source_image:
        for spec in card.samplers:
            samplers.append({"name": spec.name, "options": [
                {**f, "default": _text(f["default"]), "choices": [str(c) for c in f["choices"]]}
                for f in option_fields(sampler_options(model, spec.name))]})
    s = run.spec
    return {"key": ar.key, "label": ar.label or ar.key, "path": str(run.path), "model": run.name,
            "data": run.config.data.name,
            "family": card.family, "step": run.step, "shape": [s.channels, s.height, s.width],
            "num_classes": cond.num_classes, "label_optional": cond.label_optional,
            "likelihood": run.caps.likelihood, "samplers": samplers,
            "views": {"samples": bool(samplers), "latent": latent,
                      "manifold": latent and getattr(run.config.model, "latent_dim", None) == 2,
                      "completion": cond.partial_image, "score": run.caps.likelihood is not None}}


def _text(value) -> str:
    """An option value as `--set key=value` takes it back."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def _int(request: dict, key: str, default: int | None = None, lo: int | None = None, hi: int | None = None) -> int:
    value = request.get(key, default)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{key} must be a whole number, not {value!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InputError(f"{key}={value} is out of range: give {lo}..{hi}")
    return value


def _label(ar: AppRun, request: dict) -> int | None:
    label = request.get("label")
    if label in (None, "", "random"):
        return None
    return _int(request, "label", lo=0, hi=max(ar.run.caps.num_classes - 1, 0))


# --- samples

def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-")


def sample_job(job, ar: AppRun, request: dict) -> None:
    """Draw ``n`` samples of ``seed`` in PROGRESS_STEPS pieces (sample i is the same whatever the pieces)."""
    run, model = ar.run, ar.run.model
    n = _int(request, "n", 16, 1, MAX_SAMPLES)
    seed = _int(request, "seed", 0, 0, 2**63 - 1)
    label = _label(ar, request)
    sampler = request.get("sampler") or None
    options = sampler_options(model, sampler, {k: str(v) for k, v in (request.get("options") or {}).items()})
    name = model.card.sampler(sampler).name
    opts = dataclasses.asdict(options)
    chunk = max(1, math.ceil(n / PROGRESS_STEPS))
    parts = []
    job.progress(0, n, "samples")
    for first in range(0, n, chunk):
        count = min(chunk, n - first)
        with ar.lock:
            parts.append(draw(model, count, seed, run.device, count, label, start=first, sampler=sampler, **opts))
        job.progress(first + count, n, "samples")
    images = torch.cat(parts)
    command = (f"genlab sample {run.path} --n {n} --seed {seed}" + ("" if label is None else f" --label {label}")
               + f" --sampler {name}" + "".join(f" --set {k}={_text(v)}" for k, v in opts.items()))
    settings = {"run": str(run.path), "model": run.name, "step": run.step, "seed": seed, "n": n, "label": label,
                "sampler": name, "options": {k: _text(v) for k, v in opts.items()}}
    stem = _safe(f"{ar.label or ar.key}_seed{seed}_n{n}" + ("" if label is None else f"_label{label}") + f"_{name}"
                 + "".join(f"_{k}={_text(v)}" for k, v in opts.items()))
    nrow = math.ceil(math.sqrt(n))  # the grid `genlab sample` writes
    grid = png_bytes(images, text={"Software": "genlab app", "Comment": command,
                                   "genlab": json.dumps(settings)})
    job.files["grid.png"] = (grid, f"{stem}.png")
    job.data.update(images=images, command=command, settings=settings, stem=stem)
    job.result = {"image": f"/api/jobs/{job.id}/grid.png", "download": f"/api/jobs/{job.id}/grid.png?download=1",
                  "filename": f"{stem}.png", "command": command, "settings": settings,
                  "layout": {"nrow": nrow, "rows": math.ceil(n / nrow), "n": n}}


def one_sample_png(job, index: int) -> tuple[bytes, str]:
    """Sample ``index`` of a finished sample job as its own PNG, named and annotated with how to reproduce it."""
    images, settings = job.data["images"], job.data["settings"]
    if not 0 <= index < len(images):
        raise InputError(f"no sample {index} in this grid of {len(images)}")
    note = (f"image {index} (0-based, row-major) of: {job.data['command']}; in Python: "
            f"genlab.load({settings['run']!r}).sample({settings['n']}, seed={settings['seed']}, ...)[{index}]")
    png = png_bytes(images[index:index + 1], nrow=1, text={"Software": "genlab app", "Comment": note,
                                                           "genlab": json.dumps({**settings, "index": index})})
    return png, f"{job.data['stem']}_sample{index}.png"


# --- images the user picks: test images and uploads

def test_images(ar: AppRun, count: int = 16, seed: int = 0) -> list[dict]:
    """A seeded random choice of test images (index and picture) to pick from."""
    test = ar.test_set()
    picks = random_subset(len(test), min(count, len(test)), seed).tolist()
    x = test.batch(torch.tensor(picks), torch.Generator().manual_seed(seed))["x"]
    return [{"index": i, "image": data_uri(png_bytes(x[k:k + 1], nrow=1, scale=_scale(ar)))}
            for k, i in enumerate(picks)]


def _scale(ar: AppRun) -> int:
    """Upscaling of small images for the page (8x8 digits x16, 28x28 x4)."""
    return max(1, 128 // max(ar.run.spec.height, ar.run.spec.width))


def image_of(ar: AppRun, source: dict, upload_path) -> torch.Tensor:
    """The picked image as the model takes it, (1, C, H, W) on the run's device.

    Args:
        source: {"test": index} or {"upload": token}.
        upload_path: token -> the uploaded file (the server's temporary folder), or an error.
    """
    if "test" in source:
        test = ar.test_set()
        index = _int(source, "test", lo=0, hi=len(test) - 1)
        x = test.batch(torch.tensor([index]), torch.Generator().manual_seed(0))["x"]
    elif "upload" in source:
        # The conversion rule of `genlab score` (genlab.ood.images); a binary model's Bernoulli draw seeded 0.
        levels = read_user_image(upload_path(source["upload"]), ar.run.spec, ar.background(), seed=0)
        x = to_model_input(levels, ar.transform)[None]
    else:
        raise InputError("pick a test image or upload one")
    return x.to(ar.run.device)


def preview(ar: AppRun, path: Path) -> str:
    """An uploaded file as the model will see it."""
    levels = read_user_image(path, ar.run.spec, ar.background(), seed=0)
    return data_uri(png_bytes(to_model_input(levels, ar.transform)[None], nrow=1, scale=_scale(ar)))


# --- latent space

def latent_code(ar: AppRun, x: torch.Tensor) -> dict:
    """An image's code (the posterior mean) and its decoding, for the sliders."""
    with ar.lock:
        z = ar.run.encode(x)
        decoded = ar.run.decode(z)
    return {"z": z[0].flatten().tolist(), "shape": list(z.shape[1:]), "sliders": min(SLIDER_DIMS, z[0].numel()),
            "original": data_uri(png_bytes(x.cpu(), nrow=1, scale=_scale(ar))),
            "image": data_uri(png_bytes(decoded, nrow=1, scale=_scale(ar)))}


def decode(ar: AppRun, z: list[float], shape: list[int]) -> dict:
    code = torch.tensor(z, dtype=torch.float32)
    if not shape or code.numel() != math.prod(shape) or not torch.isfinite(code).all():
        raise InputError(f"a code of this model has {math.prod(shape or [0])} finite numbers")
    with ar.lock:
        image = ar.run.decode(code.view(1, *shape))
    return {"image": data_uri(png_bytes(image, nrow=1, scale=_scale(ar)))}


def manifold_png(ar: AppRun) -> bytes:
    with ar.lock, eval_mode(ar.run.model), torch.no_grad():
        grid = manifold_grid(ar.run.model, MANIFOLD_TILES, MANIFOLD_TILES, ar.run.device)
    h = max(ar.run.spec.height, ar.run.spec.width)
    return png_bytes(grid.cpu(), nrow=MANIFOLD_TILES, scale=max(1, 24 // h))  # tiles of about 24 pixels


def manifold_point(ar: AppRun, u: float, v: float) -> dict:
    """The decoded image under a point (u, v in [0, 1] from the left and top) of the manifold picture."""
    try:
        u, v = float(u), float(v)
    except (TypeError, ValueError):
        u = v = math.nan
    if not (0 <= u <= 1 and 0 <= v <= 1):
        raise InputError("a point of the manifold picture has u and v in [0, 1]")
    z = list(manifold_code(u, v, MANIFOLD_TILES, MANIFOLD_TILES))
    return {"z": z, **decode(ar, z, [2])}


def interpolation(ar: AppRun, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> dict:
    with ar.lock, eval_mode(ar.run.model):
        strip = interpolate(ar.run.model, x_a[0], x_b[0], steps=steps)
    return {"image": data_uri(png_bytes(strip.cpu(), nrow=steps, scale=max(1, _scale(ar) // 2)))}


# --- completion

def completion_job(job, ar: AppRun, x: torch.Tensor, request: dict, work_dir: Path) -> None:
    """Keep the top rows of ``x`` and draw several completions (`genlab complete`'s sampler and figure)."""
    h = ar.run.spec.height
    rows = _int(request, "rows", h // 2, 1, h - 1)
    k = _int(request, "completions", 4, 1, 16)
    seed = _int(request, "seed", 0, 0, 2**63 - 1)
    label = _label(ar, request)
    job.progress(0, k, "completions")
    with ar.lock:
        out = complete(ar.run.model, x, rows, k, seed, label=label)
    job.progress(k, k, "completions")
    title = f"{ar.run.name} step {ar.run.step}: top {rows} rows kept, seed {seed}"
    fig = save_completion_figure(x, out, rows, work_dir / f"{job.id}_completion.png", title)
    job.result = {"image": data_uri(_figure_bytes(fig)),
                  "completions": data_uri(png_bytes(out[0].cpu(), nrow=k, scale=_scale(ar)))}


# --- outlier score

def score_job(job, ar: AppRun, path: Path, name: str, request: dict, work_dir: Path, data_root: str | None) -> None:
    """`genlab score`'s computation on one upload, its surprise map, and where it falls among the test images."""
    seed = _int(request, "seed", 0, 0, 2**63 - 1)
    lines: list[str] = []
    job.progress(0, 1, "images")
    summary, maps = score_user_images(ar.run.path, [path], seed=seed, device=str(ar.run.device),
                                      data_root=data_root, use_ema=ar.use_ema, log=lines.append)
    entry, m = summary["images"][0], maps[0]
    # The likelihood and conversion lines are shown apart; what is left are warnings (a reversed background...).
    lines = [line.replace(str(path), name) for line in lines if line.startswith(("warning", "note"))]
    surprise = save_surprise(m.image, m.pixel_map, work_dir / f"{job.id}_surprise.png", m.map_label,
                             m.title.replace(path.name, name))
    rows = [{"name": n, "label": summary["scores"][n], **s} for n, s in entry["scores"].items()]
    in_scores = read_ood_scores(ar.run.path)
    histogram = _histogram(in_scores, entry["scores"], work_dir / f"{job.id}_histogram.png")
    job.progress(1, 1, "images")
    job.result = {"scores": rows, "likelihood": summary["likelihood"], "conversion": summary["conversion"],
                  "surprise_map": summary["surprise_map"], "log": lines, "percentiles": summary["percentiles"],
                  "surprise": data_uri(_figure_bytes(surprise)),
                  "histogram": None if histogram is None else data_uri(_figure_bytes(histogram)),
                  "histogram_note": None if histogram is not None else
                  f"no in-distribution scores yet: run `genlab ood {ar.run.path} --ood NAME` (e.g. fashion-mnist "
                  "or a folder of images) once, and this view shows where the image falls among the test images"}


def _histogram(in_scores: dict, scores: dict, out: Path) -> Path | None:
    """One panel per score: the in-distribution test images' scores (from `genlab ood`) and this image's."""
    names = [n for n in scores if f"{IN_SET}/{n}" in in_scores]
    if not names:
        return None
    cols = min(3, len(names))
    fig, axes = subplots(-(-len(names) // cols), cols, figsize=(4.0 * cols, 2.8 * -(-len(names) // cols)),
                         squeeze=False)
    for ax, n in zip(axes.flat, names):
        values = np.asarray(in_scores[f"{IN_SET}/{n}"], dtype=float)
        ax.hist(values, bins=40, color="#8aa", label="test images (in-distribution)")
        ax.axvline(scores[n]["value"], color="#c22", linewidth=2, label="your image")
        ax.set_title(n, fontsize=9)
        ax.set_xlabel("bits/dim (higher = more outlying)", fontsize=8)
        ax.tick_params(labelsize=7)
    return save_panels(fig, axes, len(names), out)


# --- compare

def compare_page(runs: list[AppRun], work_dir: Path) -> str:
    """`genlab compare`'s HTML page (metrics with protocols, sample grids, curves) for the served runs."""
    _, html = compare_runs([ar.run.path for ar in runs], work_dir / "compare" / "compare")
    return html.read_text()

