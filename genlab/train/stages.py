"""Two-stage training: a second stage (card ``first_stage``, e.g. ``vqvae-prior``) trains on the codes of a
frozen first stage, named by path in its config (``genlab train vqvae-prior --set first_stage=RUN_DIR``).

``build_model`` (``train/run.py``) loads and checks the first stage; this module holds what the trainer
does besides: refuse a second stage without its first, and replace the training images by the first
stage's token grids, computed once and cached in ``RUN_DIR/codes.safetensors`` (written atomically, with
``codes.json`` recording which first stage and data made them, so a resumed run reuses them and a changed
first stage is never mixed with stale codes), or left to the objective to encode batch by batch
(``model.codes=on-the-fly``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from genlab.config import ConfigError, RunConfig
from genlab.data.base import ImageSet
from genlab.data.download import sha256_file
from genlab.nn.modes import eval_mode
from genlab.registry import MODELS
from genlab.train.checkpoint import write_tensors, write_text_atomic

CODES_FILE, CODES_INFO = "codes.safetensors", "codes.json"


def check_first_stage(cfg: RunConfig) -> None:
    """ConfigError in one line when a second stage is trained without its first stage."""
    name = MODELS.get(cfg.model_name).card.first_stage
    if name is not None and not cfg.model.first_stage:
        raise ConfigError(f"{cfg.model_name} trains on a frozen {name}: name its run folder with "
                          f"--set model.first_stage=RUN_DIR")


@dataclass
class CodeSet(ImageSet):
    """A training split as the first stage's token grids: ``images`` holds them as (N, 1, h, w) uint8
    (K <= 256 codes) or int32 (larger codebooks), and a batch is ``{"codes": (B, h, w) int64, "y": labels}``."""

    def to(self, device) -> "CodeSet":
        labels = None if self.labels is None else self.labels.to(device)
        return dataclasses.replace(self, images=self.images.to(device), labels=labels)

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        out = {"codes": self.images[index, 0].long()}
        if self.labels is not None:
            out["y"] = self.labels[index]
        return out


def training_codes(cfg: RunConfig, model, train_set: ImageSet, run_dir: Path, device, write: bool,
                   batch_size: int = 500) -> ImageSet:
    """What a second stage trains on: ``train_set`` itself (``model.codes=on-the-fly``, or a first stage-less
    model) or its token grids, read from the run folder's cache when it was made by the same first stage and
    data, else computed now and (``write``: the main process) cached atomically."""
    card = MODELS.get(cfg.model_name).card
    if card.first_stage is None or cfg.model.codes == "on-the-fly":
        return train_set
    if train_set.transform == "bernoulli":
        raise ConfigError(f"{train_set.name} draws a new binarization every epoch; codes cached once would freeze "
                          "one of them: set model.codes=on-the-fly")
    key = {"first_stage": cfg.model.first_stage, "first_stage_sha256": cfg.model.first_stage_sha256,
           "dataset": train_set.name, "split": train_set.split, "images": len(train_set)}
    path, info_path = Path(run_dir) / CODES_FILE, Path(run_dir) / CODES_INFO
    codes = _read_cache(path, info_path, key)
    if codes is None:
        began = time.perf_counter()
        chunks = []
        dtype = torch.uint8 if model.codes <= 256 else torch.int32  # uint8 keeps the caches written before
        with torch.no_grad(), eval_mode(model):
            for start in range(0, len(train_set), batch_size):
                idx = torch.arange(start, min(start + batch_size, len(train_set)), device=train_set.images.device)
                chunks.append(model.tokens(train_set.batch(idx)["x"].to(device)).to(dtype).cpu())
        codes = torch.cat(chunks).unsqueeze(1)  # (N, 1, h, w)
        seconds = time.perf_counter() - began
        if write:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp_{CODES_FILE}")
            write_tensors({"codes": codes}, tmp)
            os.replace(tmp, path)  # a reader sees the whole file or none
            write_text_atomic(info_path, json.dumps({**key, "sha256": sha256_file(path),
                                                     "encode_seconds": round(seconds, 2)}, indent=1) + "\n")
    note = f"token grids of {train_set.name}/{train_set.split} by the first stage {cfg.model.first_stage}"
    return CodeSet(train_set.name, train_set.split, codes, train_set.labels, train_set.spec, "scale", note)


def _read_cache(path: Path, info_path: Path, key: dict) -> torch.Tensor | None:
    """The cached codes when codes.json names the same first stage and data and the file's sha256 matches."""
    if not (path.exists() and info_path.exists()):
        return None
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(info, dict) or any(info.get(k) != v for k, v in key.items()):
        return None
    if info.get("sha256") != sha256_file(path):
        return None
    try:
        codes = load_file(str(path))["codes"]
    except (SafetensorError, KeyError, OSError):
        return None
    return codes if codes.shape[0] == key["images"] else None
