"""Checkpoints: safetensors weights + JSON state, written atomically, verified by sha256.

Layout: RUN_DIR/checkpoints/step_00001000/{model,ema,optim,rng,objective}.safetensors +
state.json, and RUN_DIR/checkpoints/latest naming the newest complete one. A checkpoint
is written into a temporary folder, flushed and renamed into place, so a crash mid-write
leaves the previous checkpoint untouched; a failed write (disk full) removes its temporary
folder and says which checkpoint is intact. A file that is unreadable, fails its sha256,
is not safetensors or lacks the tensors the caller needs makes the loader fall back to the
previous checkpoint. No pickled code is ever loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from genlab.data.download import sha256_file
from genlab.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, incomplete or corrupt."""


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
    with open(tmp, "w") as f:  # open() follows the user's umask
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


def split_tensors(prefix: str, tree) -> tuple[dict[str, torch.Tensor], object]:
    """Separate the tensors of a nested state (dicts with string keys, lists, numbers, strings) from the rest.

    Returns the tensors keyed ``prefix/path/to/leaf`` (for safetensors) and the tree with each tensor
    replaced by ``{"__tensor__": key}`` (for JSON), so that no state ever needs pickle.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(node, path):
        if torch.is_tensor(node):
            tensors[path] = node
            return {"__tensor__": path}
        if isinstance(node, dict):
            bad = [k for k in node if not isinstance(k, str)]
            if bad:
                raise TypeError(f"state keys must be strings (they are stored as JSON): {bad[:3]} under {path!r}")
            return {k: walk(v, f"{path}/{k}") for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(node)]
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot store {type(node).__name__} at {path!r} without pickle: use tensors, numbers, "
                        "strings, lists or dicts")

    return tensors, walk(tree, prefix)


def join_tensors(tensors: dict[str, torch.Tensor], tree):
    """Inverse of ``split_tensors``; a missing tensor is a CheckpointError."""
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            if tree["__tensor__"] not in tensors:
                raise CheckpointError(f"the checkpoint lacks the tensor {tree['__tensor__']!r}")
            return tensors[tree["__tensor__"]]
        return {k: join_tensors(tensors, v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [join_tensors(tensors, v) for v in tree]
    return tree


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint failed (disk full, quota, permissions); the previous one is intact."""


def write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write a safetensors file under the user's umask, flushed to disk before it counts."""
    data = save(_tensors(tensors))
    # safetensors' own save_file creates files 0600, which hides runs from the other users of a shared machine.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # 0666 less the umask
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _step_of(path: Path) -> int:
    return int(path.name.rsplit("_", 1)[1])


def _write_folder(folder: Path, step: int, files: dict[str, dict], meta: dict) -> None:
    folder.mkdir()
    digests = {}
    for fname, tensors in files.items():
        write_tensors(tensors, folder / fname)
        digests[fname] = sha256_file(folder / fname)
    manifest = {**meta, "step": step, "files": digests}
    write_text_atomic(folder / "state.json", json.dumps(manifest, indent=1))
    _fsync_dir(folder)


def _repair(root: Path) -> None:
    """Finish what a crash interrupted: a step whose old copy was moved aside but whose new copy never landed."""
    for old in root.glob(".old_step_*"):
        final = root / old.name.removeprefix(".old_")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, final)
    for tmp in root.glob(".tmp_step_*"):
        shutil.rmtree(tmp, ignore_errors=True)


def save_checkpoint(run_dir: Path, step: int, model_state: dict, ema_state: dict | None,
                    optimizers: dict, rng: dict[str, torch.Tensor], state: dict, keep: int,
                    objective_state: dict | None = None) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it and prune old ones.

    The new checkpoint is written into a temporary folder and renamed into place. When a
    checkpoint of the same step exists (``--resume`` of a finished run), it is moved aside
    first and deleted only once the new one is in place; readers also look at the copy moved
    aside, so there is never a moment without a valid checkpoint, even with ``keep=1``.

    Args:
        keep: how many checkpoints to keep, newest first (0 keeps all).
        objective_state: the objective's ``state_dict()`` if it has one (tensors and JSON values).

    Raises:
        CheckpointWriteError: the write failed (disk full, quota, permissions); the temporary
            folder is removed and the message names the checkpoint that is intact.
    """
    if keep < 0:
        raise ValueError(f"keep={keep}: give 0 to keep every checkpoint or N >= 1 to keep the newest N")
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:08d}"
    tmp, old = root / f".tmp_{final.name}", root / f".old_{final.name}"
    files = {"model.safetensors": model_state, "rng.safetensors": rng}
    if ema_state is not None:
        files["ema.safetensors"] = ema_state
    optim_tensors, optim_meta = {}, {}
    for name, opt in optimizers.items():
        t, meta = flatten_optimizer(name, opt.state_dict())
        optim_tensors.update(t)
        optim_meta[name] = meta
    files["optim.safetensors"] = optim_tensors
    meta = {**state, "optimizers": optim_meta}
    if objective_state is not None:
        files["objective.safetensors"], meta["objective"] = split_tensors("objective", objective_state)
    try:
        root.mkdir(parents=True, exist_ok=True)
        _repair(root)
        _write_folder(tmp, step, files, meta)
        if final.exists():
            os.rename(final, old)  # kept, and found by list_checkpoints, until the new copy is in place
        os.rename(tmp, final)
        _fsync_dir(root)
        write_text_atomic(root / "latest", final.name + "\n")
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            try:
                os.rename(old, final)
            except OSError:
                pass  # still readable as the moved-aside copy
        intact = list_checkpoints(run_dir)
        if intact:
            where = (f"the checkpoint {intact[0].name} is intact: free space or fix permissions, then continue with "
                     f"`genlab train --resume {run_dir}`")
        else:
            where = (f"no checkpoint was written before: free space or fix permissions, then start again with "
                     f"`genlab train --resume {run_dir}` or the same command")
        raise CheckpointWriteError(f"could not write checkpoint {final.name} into {root} ({err}); {where}") from None
    shutil.rmtree(old, ignore_errors=True)
    if keep:
        for stale in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, newest first (a copy moved aside by an interrupted rewrite after its step's own)."""
    root = Path(run_dir) / "checkpoints"
    found = [p for pattern in ("step_*", ".old_step_*") for p in root.glob(pattern) if (p / "state.json").exists()]
    return sorted(found, key=lambda p: (_step_of(p), not p.name.startswith(".")), reverse=True)


def load_checkpoint(path: Path, device="cpu") -> dict:
    """Read and verify one checkpoint folder; raise CheckpointError naming the bad file."""
    path = Path(path)
    try:
        manifest = json.loads((path / "state.json").read_text())
        files, _ = manifest["files"], manifest["step"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path / 'state.json'} is unreadable ({type(err).__name__}: {err})") from None
    out = {"state": manifest}
    for fname, digest in files.items():
        f = path / fname
        try:
            # One read serves the checksum and the parsing, so the bytes verified are the bytes used, and
            # the tensors own their memory (a file memory-mapped by load_file could change under them).
            data = f.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"{f} is missing") from None
        except OSError as err:
            raise CheckpointError(f"{f} is unreadable ({err})") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise CheckpointError(f"{f} is corrupt: sha256 {actual[:16]}... differs from the recorded {digest[:16]}...")
        try:
            tensors = load(data)
        except SafetensorError as err:
            raise CheckpointError(f"{f} is not a valid safetensors file ({err})") from None
        out[fname.removesuffix(".safetensors")] = {k: v.to(device) for k, v in tensors.items()}
    for needed in ("model", "rng"):
        if needed not in out:
            raise CheckpointError(f"{path} holds no {needed}.safetensors")
    return out


def check_tensors(path: Path, name: str, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError unless ``tensors`` has exactly the names, shapes and dtypes of ``expected``."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and (tensors[k].shape != expected[k].shape
                                                     or tensors[k].dtype != expected[k].dtype)]
    if missing or extra or wrong:
        parts = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape or dtype", wrong))
                 if keys]
        raise CheckpointError(f"{path / (name + '.safetensors')} does not hold the tensors this run needs "
                              f"({'; '.join(parts)})")


def load_latest(run_dir: Path, device="cpu", restore: Callable[[dict], None] | None = None) -> dict:
    """The newest checkpoint that verifies; older ones are tried, with a warning, if the newest is corrupt.

    Args:
        restore: called with each candidate checkpoint (a dict with ``path``); it checks that the
            checkpoint holds what the caller needs (raising CheckpointError if not, which makes the
            next older checkpoint the candidate) and then loads it into the caller's objects.
    """
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise CheckpointError(f"{run_dir} has no checkpoint (looked in {Path(run_dir) / 'checkpoints'})")
    errors = []
    for path in candidates:
        try:
            ckpt = load_checkpoint(path, device)
            ckpt["path"] = path
            if restore is not None:
                restore(ckpt)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        if errors:
            warnings.warn(f"skipped corrupt checkpoint(s): {'; '.join(errors)}; using {path.name}", stacklevel=2)
        return ckpt
    raise CheckpointError("no valid checkpoint: " + "; ".join(errors))
