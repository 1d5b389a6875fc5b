"""`genlab export`: one self-contained folder per trained model, the shape of a model shared on a model hub.

    FOLDER/model.safetensors   the weights the run was loaded with (EMA when it kept them)
    FOLDER/config.json         the run's resolved configuration (as in the run folder)
    FOLDER/data.json           what the model sees: shape, bits, classes, dataset
    FOLDER/export.json         step, weights kind (ema | raw), sha256 of model.safetensors, genlab version
    FOLDER/eval.json           the run's evaluation, when it has one
    FOLDER/command.txt, git.txt  what made the run
    FOLDER/README.md           the model card: what it is, how to load it, its eval table, the command

``genlab.load(FOLDER)`` (``train.run.load_run``) reads it back on any machine, with no run folder,
checkpoint or dataset; nothing in it is pickled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import save_file

from genlab import __version__
from genlab.card import conditioning, likelihood_of
from genlab.data.download import sha256_file
from genlab.reports.page import md_table
from genlab.reports.report import metrics_table
from genlab.train.checkpoint import write_text_atomic
from genlab.train.run import EXPORT_INFO, EXPORT_WEIGHTS, LoadedRun, read_run_json

COPIED = ("config.json", "data.json", "eval.json", "command.txt", "git.txt")


def _read(path: Path, default: str = "?") -> str:
    return path.read_text().strip() if path.exists() else default


def _card_facts(model) -> list[str]:
    """The model's card, in words."""
    card, cond = model.card, conditioning(model)
    samplers = ", ".join(f"`{spec.name}`" for spec in card.samplers) or "none (it does not generate)"
    likelihood = ("none" if card.likelihood == "none" else
                  f"{card.likelihood} -log {likelihood_of(model)} (`run.nll(x)`, in nats and bits/dim)")
    facts = [f"samplers: {samplers}", f"likelihood: {likelihood}",
             f"latents: {'none' if card.encoder == 'none' else card.encoder + ' (`run.encode(x)` / `run.decode(z)`)'}"]
    if cond.num_classes:
        facts.append(f"class-conditional: labels 0..{cond.num_classes - 1}"
                     + (" (optional: a random class when none is given)" if cond.label_optional else ""))
    if card.evaluators:
        facts.append("evaluators: " + ", ".join(f"`{e}`" for e in card.evaluators))
    return facts


def _use_lines(model) -> list[str]:
    card, cond = model.card, conditioning(model)
    label = ", label=0" if cond.num_classes else ""
    if cond.source_image:  # an image-to-image model translates given images; it has nothing to sample from
        return ["# x: images of domain A (B, C, H, W), floats in [0, 1] or uint8",
                "translations = run.translate(x, \"a2b\")  # and run.translate(y, \"b2a\") back"]
    lines = [f"images = run.sample(16, seed=0{label})  # (16, C, H, W) in [0, 1]"] if card.samplers else []
    if card.likelihood != "none" or card.encoder != "none":
        lines.append("# x: your images (B, C, H, W), floats in [0, 1] or uint8, in the model's format")
    if card.likelihood != "none":
        lines.append(f"nll = run.nll(x{label})  # .nats, .bits_per_dim, .kind == \"{card.likelihood}\"")
    if card.encoder != "none":
        lines.append("z = run.encode(x); reconstructions = run.decode(z)")
    return lines


def model_card(run: LoadedRun, folder: Path) -> str:
    """README.md of an exported folder (Markdown)."""
    cfg, spec = run.cfg, run.spec
    model = run.model
    data = read_run_json(run.run_dir / "data.json") if (run.run_dir / "data.json").exists() else {}
    title = f"{cfg.model_name} on {cfg.data.name}"
    shape = f"{spec.channels}x{spec.height}x{spec.width}, {spec.bits}-bit"
    classes = f", {spec.num_classes} classes" if spec.num_classes else ""
    lines = [f"# {title}", "",
             f"A genlab `{cfg.model_name}` model (family {model.card.family}, objective "
             f"`{cfg.objective_name}`) trained for {run.step} steps on `{cfg.data.name}` "
             f"({shape}{classes}; {data.get('train_examples', '?')} training images). "
             f"Weights: {'EMA' if run.used_ema else 'raw'}, in `{EXPORT_WEIGHTS}`.", "",
             "## What it is", "", *[f"- {fact}" for fact in _card_facts(model)], "",
             "## Use", "", "```python", "import genlab", "",
             f"run = genlab.load(\"{folder.name}\")  # this folder", *_use_lines(model),
             "```", "", ("or `genlab translate FOLDER IMAGE... --direction a2b` from the command line."
                         if conditioning(model).source_image else
                         "or `genlab sample FOLDER --n 64` from the command line."), ""]
    eval_path = run.run_dir / "eval.json"
    if eval_path.exists():
        table = metrics_table(read_run_json(eval_path))
        lines += ["## Evaluation", "", *md_table(table[0], table[1:]), ""]
    else:
        lines += ["## Evaluation", "", "Not evaluated before export (`genlab eval FOLDER` writes eval.json).", ""]
    lines += ["## How it was made", "", "```", _read(run.run_dir / "command.txt"), "```", "",
              f"genlab revision: `{_read(run.run_dir / 'git.txt')}`", "",
              "## Configuration", "", "```json", cfg.to_json(), "```", ""]
    return "\n".join(lines)


def export_run(run: LoadedRun, folder: str | Path) -> Path:
    """Write the self-contained folder of a loaded run (see the module docstring); returns the folder.

    Raises:
        FileExistsError: ``folder`` exists and is not empty.
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not empty: export into a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (run.run_dir / name).exists():
            shutil.copyfile(run.run_dir / name, folder / name)
    # Cloned: safetensors refuses tensors that share storage (tied or aliased weights).
    weights = {k: v.detach().to("cpu").contiguous().clone() for k, v in run.model.state_dict().items()}
    save_file(weights, str(folder / EXPORT_WEIGHTS))
    info = {"step": run.step, "weights": "ema" if run.used_ema else "raw", "sha256": sha256_file(folder / EXPORT_WEIGHTS),
            "model": run.cfg.model_name, "genlab_version": __version__}
    write_text_atomic(folder / EXPORT_INFO, json.dumps(info, indent=1) + "\n")
    write_text_atomic(folder / "README.md", model_card(run, folder))
    return folder
