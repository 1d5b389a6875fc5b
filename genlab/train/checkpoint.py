"""Checkpoints: safetensors weights + JSON state, written atomically, verified by sha256.

Layout: RUN_DIR/checkpoints/step_00001000/{model,ema,optim,rng}.safetensors + state.json,
and RUN_DIR/checkpoints/latest naming the newest complete one. A checkpoint is
written into a temporary folder and renamed into place, so a crash mid-write
leaves the previous checkpoint untouched. No pickled code is ever loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from genlab.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, incomplete or corrupt."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _tensors(d: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in d.items()}


def flatten_optimizer(name: str, state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON (the rest)."""
    tensors, scalars = {}, {}
    for idx, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{name}/{idx}/{key}"] = value
            else:
                scalars[f"{idx}/{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(name: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        owner, idx, field = key.split("/", 2)
        if owner == name:
            state.setdefault(int(idx), {})[field] = value
    for key, value in meta["scalars"].items():
        idx, field = key.split("/", 1)
        state.setdefault(int(idx), {})[field] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir: Path, step: int, model_state: dict, ema_state: dict | None,
                    optimizers: dict, rng: dict[str, torch.Tensor], state: dict, keep: int) -> Path:
    """Write checkpoint ``step`` atomically and point ``latest`` at it; prune old ones."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    files = {"model.safetensors": _tensors(model_state), "rng.safetensors": _tensors(rng)}
    if ema_state is not None:
        files["ema.safetensors"] = _tensors(ema_state)
    optim_tensors, optim_meta = {}, {}
    for name, opt in optimizers.items():
        t, meta = flatten_optimizer(name, opt.state_dict())
        optim_tensors.update(t)
        optim_meta[name] = meta
    files["optim.safetensors"] = _tensors(optim_tensors)
    digests = {}
    for fname, tensors in files.items():
        save_file(tensors, str(tmp / fname))
        digests[fname] = sha256(tmp / fname)
    manifest = {**state, "step": step, "optimizers": optim_meta, "files": digests}
    with open(tmp / "state.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    write_text_atomic(root / "latest", final.name + "\n")
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, newest first."""
    root = Path(run_dir) / "checkpoints"
    return sorted((p for p in root.glob("step_*") if (p / "state.json").exists()), reverse=True)


def load_checkpoint(path: Path, device="cpu") -> dict:
    """Read and verify one checkpoint folder; raise CheckpointError naming the bad file."""
    path = Path(path)
    try:
        manifest = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path / 'state.json'} is unreadable ({err})") from None
    out = {"state": manifest}
    for fname, digest in manifest["files"].items():
        f = path / fname
        if not f.exists():
            raise CheckpointError(f"{f} is missing")
        actual = sha256(f)
        if actual != digest:
            raise CheckpointError(f"{f} is corrupt: sha256 {actual[:16]}... differs from the recorded {digest[:16]}...")
        out[fname.removesuffix(".safetensors")] = load_file(str(f), device=str(device))
    return out


def load_latest(run_dir: Path, device="cpu") -> dict:
    """The newest checkpoint that verifies; older ones are tried with a warning if the newest is corrupt."""
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise CheckpointError(f"{run_dir} has no checkpoint (looked in {Path(run_dir) / 'checkpoints'})")
    errors = []
    for path in candidates:
        try:
            ckpt = load_checkpoint(path, device)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        if errors:
            warnings.warn(f"skipped corrupt checkpoint(s): {'; '.join(errors)}; using {path.name}", stacklevel=2)
        ckpt["path"] = path
        return ckpt
    raise CheckpointError("no valid checkpoint: " + "; ".join(errors))
