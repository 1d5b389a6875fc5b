"""Run folders: what a run writes at its start, and how later commands load it back."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import torch
from safetensors.torch import load_file
from torch import nn

from genlab.data.download import sha256_file
from genlab.errors import InputError, UserError
from genlab.config import CompileMode, RunConfig
from genlab.data import load_dataset
from genlab.data.base import ImageSet
from genlab.nn.compiled import compile_for_inference
from genlab.nn.spec import DataSpec
from genlab.registry import MODELS, OBJECTIVES
from genlab.train.checkpoint import CheckpointError, check_tensors, load_latest, write_text_atomic
from genlab.train.ema import merged, young_ema_warning


class RunError(UserError, RuntimeError):
    """A run folder is missing or not a genlab run."""


def build_model(cfg: RunConfig, spec: DataSpec) -> nn.Module:
    """The run's network; a second stage (card ``first_stage``) gets its frozen first stage loaded and checked."""
    cls = MODELS.get(cfg.model_name)
    if cls.card.first_stage is None:
        return cls(cfg.model, spec)
    return cls(cfg.model, spec, first_stage=load_first_stage(cfg, spec, cls.card.first_stage))


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes, in name order: which weights a run used."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)  # 1-d: a 0-d tensor cannot be viewed as bytes
        digest.update(f"{name}:{state[name].dtype}:{tuple(state[name].shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def load_first_stage(cfg: RunConfig, spec: DataSpec, name: str) -> nn.Module | None:
    """The frozen first stage named by ``cfg.model.first_stage`` (a run or exported folder), checked.

    Records the folder's absolute path and the sha256 of its weights in ``cfg.model`` the first time
    (so config.json names exactly what the prior was trained on), and raises RunError in one line when
    the weights found later differ from the recorded ones. Without a folder, None: the model builds an
    untrained stand-in (the model tester; ``genlab train`` refuses it in ``check_first_stage``).
    """
    m = cfg.model
    if not m.first_stage:
        return None
    if not Path(m.first_stage).is_dir():
        raise RunError(f"the first stage {m.first_stage} of this {cfg.model_name} run is missing: restore it "
                       "(the prior decodes through it) or name a trained first stage with model.first_stage")
    first = load_run(m.first_stage)  # EMA weights when the first stage kept them, as `genlab sample` uses
    if first.cfg.model_name != name:
        raise RunError(f"model.first_stage={m.first_stage} is a {first.cfg.model_name} run; "
                       f"{cfg.model_name} needs a {name} run")
    if first.spec != spec or first.cfg.data.name != cfg.data.name:
        raise RunError(f"the first stage {m.first_stage} was trained on {first.cfg.data.name}; "
                       f"train {cfg.model_name} on the same data (--data {first.cfg.data.name})")
    sha = weights_sha256(first.model.state_dict())
    if m.first_stage_sha256 and sha != m.first_stage_sha256:
        raise RunError(f"the first stage {m.first_stage} changed since this {cfg.model_name} run was started "
                       f"(weights sha256 {sha[:12]}..., recorded {m.first_stage_sha256[:12]}...): restore that "
                       f"run, or train the prior again on it")
    m.first_stage, m.first_stage_sha256 = str(Path(m.first_stage).resolve()), sha
    return first.model


def build_objective(cfg: RunConfig, spec: DataSpec):
    return OBJECTIVES.get(cfg.objective_name)(cfg.objective, spec)


def git_revision() -> str:
    """The source revision of genlab itself, with '+dirty' when the tree has changes."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def write_run_header(run_dir: Path, cfg: RunConfig, spec: DataSpec, train_set: ImageSet,
                     command: str | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", cfg.to_json() + "\n")
    write_text_atomic(run_dir / "command.txt", (command or " ".join(sys.argv)) + "\n")
    write_text_atomic(run_dir / "git.txt", git_revision() + "\n")
    info = {"spec": spec.to_dict(), "dataset": train_set.name, "train_examples": len(train_set), "note": train_set.note}
    write_text_atomic(run_dir / "data.json", json.dumps(info, indent=1) + "\n")


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RunError(f"{run_dir} is not a genlab run folder (no config.json); give the --out folder of `genlab train`")
    return RunConfig.from_dict(read_run_json(path))


def read_spec(run_dir: Path) -> DataSpec:
    data = read_run_json(Path(run_dir) / "data.json")
    try:
        return DataSpec(**data["spec"])
    except (KeyError, TypeError) as err:
        raise RunError(f"{Path(run_dir) / 'data.json'} does not describe the run's data ({type(err).__name__}: "
                       f"{err}); the run folder is damaged: restore it or train again") from None


def read_run_json(path: Path) -> dict:
    """A run folder's JSON file as a dict; a RunError naming it when it is not one (never a traceback).

    Every JSON file of a run or exported folder is read through here: the folder may have been
    handed over, truncated by a full disk or edited by hand.
    """
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path} is not valid JSON ({err}); the run folder is damaged: restore it or train again") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} holds a JSON {type(data).__name__}, not an object; the run folder is damaged")
    return data


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    spec: DataSpec
    model: nn.Module
    objective: object
    step: int
    used_ema: bool
    # Set when the checkpoint kept an EMA still dominated by its initial weights (train/ema.py's rule),
    # whichever weights were loaded: a reason to compare raw and EMA numbers.
    ema_warning: str | None = None

    def dataset(self, split: str) -> ImageSet:
        return load_dataset(self.cfg.data.name, split, self.cfg.data).select_classes(self.cfg.data.classes)


# An exported model folder (`genlab export`) holds the run's config.json and data.json, the weights the run
# was loaded with in one safetensors file, and export.json recording their step, kind (EMA or raw) and sha256.
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_INFO = "export.json"


def is_export(folder: str | Path) -> bool:
    return (Path(folder) / EXPORT_INFO).exists()


def _export_weights(folder: Path, use_ema: bool) -> tuple[dict, int, bool]:
    info = read_run_json(folder / EXPORT_INFO)
    if not {"sha256", "weights", "step"} <= info.keys():
        raise RunError(f"{folder / EXPORT_INFO} lacks sha256, weights or step: export the run again with `genlab export`")
    path = folder / EXPORT_WEIGHTS
    if not path.exists():
        raise CheckpointError(f"{path} is missing: export the run again with `genlab export`")
    if sha256_file(path) != info["sha256"]:
        raise CheckpointError(f"{path} is corrupt: its sha256 differs from the one in {folder / EXPORT_INFO}")
    if info["weights"] == "ema" and not use_ema:
        raise RunError(f"{folder} holds the EMA weights only; export the run with use_ema=False for the raw ones")
    try:  # safetensors: tensors only, whatever the file claims to be (a handed folder's sha256 proves nothing)
        weights = load_file(str(path))
    except Exception as err:
        raise CheckpointError(f"{path} is not a safetensors file ({type(err).__name__}: {err}); "
                              "export the run again with `genlab export`") from None
    return weights, info["step"], info["weights"] == "ema"


def to_run_layout(model: nn.Module, cfg: RunConfig) -> nn.Module:
    """The model in its run's memory layout: NHWC with train.channels_last (faster for some presets' convolutions,
    see README "Where the time goes"), else unchanged. Checkpoints and exports stay contiguous either way."""
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def load_run(run_dir: str | Path, device="cpu", use_ema: bool = True, data_root: str | None = None,
             compile: str | None = None) -> LoadedRun:
    """Rebuild a trained model from its run folder or exported folder (EMA weights when the run kept them).

    ``compile``: None runs the networks eagerly; a torch.compile mode compiles them for inference
    (``genlab.nn.compiled.compile_for_inference``) before anything runs them.
    """
    if compile is not None and compile not in get_args(CompileMode):
        raise InputError(f"compile={compile!r} is not a torch.compile mode: give one of "
                         f"{', '.join(get_args(CompileMode))}, or None to run eagerly")
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if data_root:
        cfg.data.root = data_root
    spec = read_spec(run_dir)
    model = build_model(cfg, spec)
    if is_export(run_dir):
        weights, step, used_ema = _export_weights(run_dir, use_ema)
        # A verified file of the wrong tensors (another model's, or an edited one) gets the one-line error
        # of a run folder's checkpoint, not torch's traceback.
        check_tensors(run_dir, Path(EXPORT_WEIGHTS).stem, weights, model.state_dict())
        model.load_state_dict(weights)
        ema_warning = None  # an export keeps no EMA counters
    else:
        def restore(ckpt):  # a checkpoint without the tensors this model needs counts as corrupt
            check_tensors(ckpt["path"], "model", ckpt["model"], model.state_dict())
            if use_ema and "ema" in ckpt:
                expected = {k: v for k, v in model.state_dict().items() if k in ckpt["ema"]}
                check_tensors(ckpt["path"], "ema", ckpt["ema"], expected)
                model.load_state_dict(merged(ckpt["model"], ckpt["ema"]))
            else:
                model.load_state_dict(ckpt["model"])

        ckpt = load_latest(run_dir, restore=restore)
        used_ema = use_ema and "ema" in ckpt
        step = ckpt["state"]["step"]
        kept_ema = "ema" in ckpt and cfg.train.ema_decay > 0
        ema_warning = young_ema_warning(ckpt["state"], step, cfg.train.ema_decay) if kept_ema else None
    to_run_layout(model.to(device).eval(), cfg)  # evaluated in the layout it trained in
    if compile is not None:
        compile_for_inference(model, compile)
    return LoadedRun(run_dir, cfg, spec, model, build_objective(cfg, spec), step, used_ema, ema_warning)


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write
    return rows
