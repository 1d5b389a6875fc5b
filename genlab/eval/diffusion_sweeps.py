"""Sample quality of a diffusion model against NFE (per sampler) and against the guidance scale.

The DDIM Table 1 / EDM Figure 2 experiment at genlab's scale: for each sampler and each budget of
network evaluations (NFE), draw a sample set and judge it with the dataset's feature network (FID,
precision and recall against the test images, as ``sample-quality`` does); and for a class-conditional
model, the same against the guidance scale s (eps_u + s (eps_c - eps_u): s = 0 unconditional, 1 the
conditional model; Ho & Salimans's w is s - 1), with the share of samples the shipped LeNet classifies
as the label they were drawn for. Each row also records the sampling throughput (images/s, sampling
alone, on the machine and load of the run: a shared CPU makes it noisy).

Rows go to RUN_DIR/diffusion_sweeps.json (``write_sweep``), which ``genlab report`` plots. The script
``benchmarks/diffusion_sweeps.py`` runs both sweeps from the command line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from genlab.card import conditioning
from genlab.data.base import ImageSet
from genlab.errors import InputError
from genlab.eval.feature_nets import feature_net_name_for
from genlab.eval.features import load_feature_net
from genlab.eval.sample_metrics import draw_samples, reference_stats, sample_quality
from genlab.sampling.api import describe_sampling, sampler_options
from genlab.sampling.diffusion import nfe as nfe_of
from genlab.train.checkpoint import write_text_atomic

SWEEPS_FILE = "diffusion_sweeps.json"


def steps_for_nfe(sampler: str, nfe: int) -> int:
    """The ``steps`` option that costs ``nfe`` network evaluations (Heun: 2N - 1, so N = (nfe + 1) // 2)."""
    return max(1, (nfe + 1) // 2) if sampler == "heun" else nfe


@torch.no_grad()
def judge(model, test: ImageSet, device, sampler: str, options: dict, n: int, seed: int = 0,
          batch_size: int = 250, n_reference: int = 10000, weights_dir=None) -> dict:
    """One sample set of ``n`` images drawn with ``sampler`` and ``options``, judged against ``test``.

    A class-conditional model draws label i mod K for sample i. Returns one row: sampler, options, NFE,
    n_samples, fid, precision, recall (and label_accuracy in % for a conditional model), sampling_s and
    images_per_s (sampling only), and the protocol text of the FID record.
    """
    name = feature_net_name_for(test.name)
    if name is None:
        raise InputError(f"dataset {test.name!r} has no domain feature network: sweeps run on mnist or fashion-mnist")
    net = load_feature_net(name, weights_dir, device)
    typed = sampler_options(model, sampler, options)
    num_classes = conditioning(model).num_classes
    began = time.perf_counter()
    images, labels = draw_samples(model, n, seed, device, batch_size, num_classes, sampler=sampler, **options)
    seconds = time.perf_counter() - began
    ref = reference_stats(net, test, n_reference, seed=0)
    note = f"model {type(model).__name__}, {describe_sampling(model, sampler, typed)}, seed {seed}"
    records = sample_quality(images, net, ref, seed, labels, note)
    row = {"sampler": sampler, "options": options, "nfe": nfe_of(sampler, typed, model), "n_samples": n,
           "fid": records[f"fid_{net.name}"]["value"], "precision": records[f"precision_{net.name}"]["value"],
           "recall": records[f"recall_{net.name}"]["value"], "sampling_s": round(seconds, 2),
           "images_per_s": round(n / seconds, 2), "protocol": records[f"fid_{net.name}"]["protocol"]}
    if f"label_accuracy_{net.name}" in records:
        row["label_accuracy"] = records[f"label_accuracy_{net.name}"]["value"]
    return row


def fid_vs_nfe(model, test: ImageSet, device, samplers: list[str], nfes: list[int], n: int, seed: int = 0,
               batch_size: int = 250, log=print, **judge_kw) -> list[dict]:
    """A ``judge`` row per sampler and NFE (the same seeds in every set; conditional models at guidance 1)."""
    rows = []
    for sampler in samplers:
        for budget in nfes:
            row = judge(model, test, device, sampler, {"steps": steps_for_nfe(sampler, budget)}, n, seed,
                        batch_size, **judge_kw)
            log(f"{sampler:9s} NFE {row['nfe']:4d}: FID {row['fid']:.2f}, precision {row['precision']:.3f}, "
                f"recall {row['recall']:.3f}, {row['images_per_s']:.1f} images/s")
            rows.append(row)
    return rows


def guidance_sweep(model, test: ImageSet, device, scales: list[float], n: int, sampler: str = "ddim",
                   steps: int = 20, seed: int = 0, batch_size: int = 250, log=print, **judge_kw) -> list[dict]:
    """A ``judge`` row per guidance scale s (eps_u + s (eps_c - eps_u)) of a class-conditional model.

    Raises InputError for an unconditional model, and (from the sampler) for a conditional one whose
    label embedding equals the null token's, which guidance could not amplify.
    """
    if not conditioning(model).num_classes:
        raise InputError("the guidance sweep needs a class-conditional model (model.conditional=true)")
    rows = []
    for s in scales:
        row = judge(model, test, device, sampler, {"steps": steps, "guidance": float(s)}, n, seed, batch_size,
                    **judge_kw)
        row["guidance"] = float(s)
        log(f"guidance s={s:g} (w={s - 1:g}): FID {row['fid']:.2f}, precision {row['precision']:.3f}, "
            f"recall {row['recall']:.3f}, label accuracy {row['label_accuracy']:.1f} %")
        rows.append(row)
    return rows


def read_sweeps(run_dir: str | Path) -> dict:
    """RUN_DIR/diffusion_sweeps.json ({"nfe": rows, "guidance": rows}); {} when absent."""
    path = Path(run_dir) / SWEEPS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _row_key(row: dict) -> str:
    # The sample count is part of the setting: a 1,000-sample FID must not replace a 10,000-sample one
    # (FID is biased upwards at small n, so they are different measurements).
    return json.dumps([row["sampler"], row["options"], row.get("n_samples")], sort_keys=True)


def write_sweep(run_dir: str | Path, kind: str, rows: list[dict], step: int, weights: str) -> Path:
    """Add the rows of one sweep ("nfe" or "guidance") to RUN_DIR/diffusion_sweeps.json.

    A row with the same sampler, options and sample count replaces the stored one; rows of another checkpoint or
    weights are dropped, so the file always describes one set of weights.
    """
    data = read_sweeps(run_dir)
    old = data.get(kind, {})
    same = old.get("checkpoint_step") == step and old.get("weights") == weights
    merged = {_row_key(r): r for r in (old.get("rows", []) if same else [])}
    merged.update({_row_key(r): r for r in rows})
    data[kind] = {"checkpoint_step": step, "weights": weights, "rows": list(merged.values())}
    path = Path(run_dir) / SWEEPS_FILE
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")
    return path
