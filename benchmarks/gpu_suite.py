"""The GPU suite: paper-level presets of five families, trained and evaluated in about 10 minutes on one GPU.

    python benchmarks/gpu_suite.py --out runs/gpu-suite            # an H100/H200-class GPU
    python benchmarks/gpu_suite.py --smoke --out /tmp/gpu-smoke    # tiny sizes, a few steps, on the CPU

Every model is trained by genlab's one loop (`genlab.api.train_run`) with the dataset resident on the
device (the loop's BatchStream indexes a device tensor), bf16 autocast, `torch.compile` and large
batches, then evaluated by genlab's evaluators (`Run.evaluate`). Per model it prints the training
images/s (median of the logged windows after the first, which holds the compilation), the model FLOPs
utilization (training FLOPs per image, counted by `torch.utils.flop_counter.FlopCounterMode` over one
forward + backward step, times images/s, over the device's dense bf16 peak from `PEAK_BF16` below) and
the quality reached (NLL with its protocol, FID), and writes all of it to OUT/suite.json.

Sizing: each model gets a share of the 10 minutes (`Preset.seconds`) for training. A calibration run of
`CALIBRATION_STEPS` compiled steps measures its images/s after compilation (inductor's graph cache keeps the
compiled kernels for the real run); the step count is the share times that rate (capped by the preset's own
length), so the learning-rate schedule ends when the share does, and `train.max_seconds` stops the run at 1.5
times the share if the rate drops. (The first lent H200 showed why a FLOP-count guess does not do: these
networks reached 0.1 to 6 % of the bf16 peak, not the 10 % assumed, so the runs were cut by the time box
with the schedule still near its top.) The rest of the budget is compilation and evaluation.

`--compile-mode reduce-overhead` (train.compile_mode) replays each compiled network as a CUDA graph: the
second H200 lease found the suite's steps bound by the host's launching (README, GPU suite), which that
mode is meant to remove; it has not run on a GPU yet.

The EMA of the weights (decay 0.999 unless the preset sets one) warms up by count (min(decay, (1+n)/(10+n)))
unless the preset chose a warm-up: a plain 0.999 average over a run of 1,500 steps still holds a fifth of the
untrained weights (0.999^1500 = 0.22), which cost the first H200 run 56 nats on the VAE (143.73 with the
average against 87.74 with the raw weights).

Before training, one uncompiled step of each model runs under `placement_guard`: the default device is
"meta" inside the objective, so any tensor the forward pass creates without `device=` is a meta tensor
and the first operation mixing it with the model's tensors raises; under the same guard bf16 autocast
is on (CUDA autocast on a GPU, CPU autocast in --smoke) and every convolution and linear layer must
output bf16 while the loss reaches the optimizer finite. --smoke runs all of it on the CPU with
`train.compile_backend=eager` (tracing, no code generation), so these CUDA-path branches stay tested.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import get_args

import torch
from torch.utils.flop_counter import FlopCounterMode

import genlab  # noqa: F401
from genlab.api import load, train_run
from genlab.config import CompileMode
from genlab.configs import resolve_train_config
from genlab.train.checkpoint import write_text_atomic
from genlab.train.run import read_metrics
from genlab.nn.compiled import compile_submodules
from genlab.train.step import train_step

sys.path.insert(0, str(Path(__file__).parent))  # the sibling scripts below
from profile_step import profiled_steps, step_parts  # noqa: E402
from runs_common import run_script  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks in FLOP/s, from NVIDIA's data sheets; matched as a substring of
# torch.cuda.get_device_name(), longest first. H100 PCIe is listed apart because its peak is lower.
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12, "B200": 2250e12,
             "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12, "RTX 4090": 165e12}
CALIBRATION_STEPS = 60  # compiled steps timed before each real run (the first third holds compilation)
BUDGET_S = 600  # the whole suite on one GPU


@dataclass
class Preset:
    """One model of the suite: a genlab preset with the GPU's batch and length, and its evaluation."""

    name: str
    preset: str  # a name from `genlab models --presets`
    gpu: dict[str, str]  # overrides on the GPU (batch, length, width)
    smoke: dict[str, str]  # overrides for --smoke (tiny networks)
    seconds: float  # this model's share of the suite's training time on the GPU
    evaluators: tuple[str, ...]  # genlab evaluators giving the quality figures
    eval_gpu: dict = field(default_factory=dict)  # EvalOptions on the GPU (the protocol is recorded)


PRESETS = [
    Preset("vae", "vae-binarized-mnist", {"train.batch_size": "512", "optim.lr": "2e-3"},
           {"model.channels": "8,16", "model.hidden": "32", "model.latent_dim": "4"}, 75, ("iwae",),
           {"protocol": "paper"}),  # IWAE k = 5000 on all 10,000 test images (Burda et al.)
    Preset("gated-pixelcnn", "gated-pixelcnn-binarized-mnist", {"train.batch_size": "256", "optim.lr": "2e-3"},
           {"model.channels": "8", "model.layers": "2"}, 100, ("exact-nll",), {"protocol": "paper"}),
    Preset("pixelvae", "pixelvae-binarized-mnist", {"train.batch_size": "256", "optim.lr": "2e-3"},
           {"model.channels": "8,8", "model.hidden": "16", "model.cond_channels": "4", "model.pixel_channels": "8",
            "model.pixel_layers": "1", "model.head_channels": "8"}, 100, ("iwae",),
           {"iwae_k": 1000, "max_examples": 2000}),  # k = 1000 decodes of a PixelCNN per image: 2,000 images
    # The paper-width U-Net of ddpm-mnist-gpu, attention at 7x7 only, and an EMA short enough for 140 s.
    Preset("diffusion", "ddpm-mnist-gpu", {"train.batch_size": "512", "model.attention_resolutions": "7",
                                           "train.ema_decay": "0.999", "train.steps": "20000"},
           {"model.channels": "8", "model.mult": "1,2", "model.attention_resolutions": "14",
            "model.timesteps": "20"}, 140, ("sample-quality",),
           {"n_samples": 10000, "n_reference": 10000, "sampler_steps": 50}),  # DDIM at NFE 50
    Preset("dcgan", "dcgan-mnist", {"train.batch_size": "256", "train.steps": "10000"}, {"model.width": "8"}, 60, ("sample-quality",),
           {"n_samples": 10000, "n_reference": 10000}),
]

# Tiny evaluation sizes for --smoke (the protocol is still written out).
SMOKE_EVAL = {"max_examples": 8, "iwae_k": 4, "n_samples": 32, "n_reference": 64, "sampler_steps": 2, "batch_size": 8}


def peak_of(name: str) -> tuple[float | None, str]:
    """A GPU's dense bf16 peak in FLOP/s from its name (None if not in the table), and where it comes from."""
    for key in sorted(PEAK_BF16, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if key in name:
            return PEAK_BF16[key], f"PEAK_BF16[{key!r}] (dense bf16, NVIDIA data sheet)"
    return None, "not in PEAK_BF16: give --peak-tflops"


def device_peak(device: torch.device, given_tflops: float | None) -> tuple[str, float | None, str]:
    """(device name, its dense bf16 peak in FLOP/s or None, where the peak comes from)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if given_tflops:
        return name, given_tflops * 1e12, "--peak-tflops"
    if device.type != "cuda":
        return name, None, "no table entry for CPUs: give --peak-tflops"
    return (name, *peak_of(name))


def cuda_settings(device: torch.device) -> dict[str, bool]:
    """Fast-math settings of a GPU run (TF32 for what autocast leaves in fp32, cuDNN autotuning); applied on
    CUDA only and recorded in the JSON."""
    settings = {"matmul.allow_tf32": True, "cudnn.allow_tf32": True, "cudnn.benchmark": True}
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return settings


class PlacementGuard:
    """A context around each objective call: factories without ``device=`` make meta tensors (which fail
    when mixed with the model's), and bf16 autocast is on for the device type. Re-entered per micro-batch."""

    def __init__(self, device: torch.device):
        self.device_type = device.type

    def __enter__(self):
        self.stack = contextlib.ExitStack()
        self.stack.enter_context(torch.device("meta"))
        self.stack.enter_context(torch.autocast(self.device_type, dtype=torch.bfloat16))
        return self

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)


def profile_steps(cfg, device: torch.device, steps: int = 10, warmup: int = 5) -> tuple[dict, str]:
    """Where a compiled training step's time goes: ``steps`` steps of the loop's step function after
    ``warmup`` (compilation), under the PyTorch profiler.

    Returns:
        (summary, table): the wall time per step, the device's busy time per step (the sum of its kernels'
        times) and their ratio, which says how much of the step the accelerator works rather than waits for
        the host; and the profiler's top operators by self time on the device (on the host for a CPU).
    """
    model, objective, stream, opts = step_parts(cfg, device)
    graphs = compile_submodules(model, cfg.train.compile_backend, cfg.train.compile_mode)
    events, wall = profiled_steps(model, objective, stream, opts, warmup, steps, device,
                                  torch.autocast(device.type, dtype=torch.bfloat16), graphs)
    on_device = device.type == "cuda"
    busy = sum(e.self_device_time_total for e in events) / steps / 1e6 if on_device else None
    summary = {"step_ms": 1e3 * wall, "device_busy_ms_per_step": 1e3 * busy if on_device else None,
               "device_busy_fraction": busy / wall if on_device else None}
    table = events.table(sort_by="self_device_time_total" if on_device else "self_cpu_time_total", row_limit=25)
    return summary, table


def check_step(cfg, device: torch.device) -> dict:
    """One guarded, uncompiled training step on ``device`` and its FLOPs (raises what it finds wrong).

    Returns:
        flops_per_image (training: forward + backward of every phase), params, and the dtypes seen.
    """
    model, objective, stream, opts = step_parts(cfg, device)
    batch = stream.micro_batches(0)[0]
    for key, value in batch.items():
        if torch.is_tensor(value) and value.device.type != device.type:
            raise AssertionError(f"batch[{key!r}] is on {value.device}, not resident on {device}")
    dtypes: set[str] = set()

    def record(module, inputs, output):
        if torch.is_tensor(output):
            dtypes.add(str(output.dtype).removeprefix("torch."))
    hooks = [m.register_forward_hook(record) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    with FlopCounterMode(display=False) as counter:
        results = train_step(model, objective, [batch], 0, opts, autocast=PlacementGuard(device))
    for h in hooks:
        h.remove()
    if dtypes != {"bfloat16"}:
        raise AssertionError(f"under bf16 autocast the convolutions and linear layers gave {sorted(dtypes)}")
    for phase, r in results.items():
        if r.skipped or not torch.isfinite(r.terms["loss"]):
            raise AssertionError(f"phase {phase}: the bf16 step's loss or gradient is not finite")
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [v for opt in opts.optimizers.values() for s in opt.state.values() for v in s.values()
                if torch.is_tensor(v) and v.dim()]  # Adam's moments (its 0-d step counts sit on the CPU unless fused)
    misplaced = [tuple(t.shape) for t in tensors if t.device.type != device.type]
    if misplaced:
        raise AssertionError(f"{len(misplaced)} parameters/buffers/optimizer states are not on {device}: {misplaced[:3]}")
    return {"flops_per_image": counter.get_total_flops() / cfg.train.batch_size,
            "params": sum(p.numel() for p in model.parameters()), "autocast_dtypes": sorted(dtypes)}


def window_rates(run_dir: Path) -> list[float]:
    """Images/s of each logged window; the first holds the compilation and is dropped when others exist."""
    rates = [row["images_per_s"] for row in read_metrics(run_dir) if "images_per_s" in row]
    return rates[1:] if len(rates) > 1 else rates


def quality(evaluation: dict) -> dict:
    """The headline numbers of eval.json: value, unit, kind, standard error, images, whether partial, and the
    protocol of each metric."""
    out = {}
    for key, rec in evaluation["metrics"].items():
        if rec.get("unit") in ("nats/image", "bits/dim") or key.startswith("fid"):
            proto = rec.get("eval_protocol", {})
            out[key] = {"value": rec["value"], "unit": rec["unit"], "kind": rec["kind"],
                        "stderr": rec.get("stderr"), "n": rec.get("n"), "partial": bool(rec.get("partial")),
                        "protocol": {k: proto.get(k) for k in ("name", "iwae_k", "max_examples", "n_samples",
                                                                "n_reference", "sampler_steps")}}
    return out


def calibrate(preset: str, over: dict, run_dir: Path, data_root, steps: int = CALIBRATION_STEPS,
              command: str = "benchmarks/gpu_suite.py (calibration)") -> float:
    """Images/s of ``preset`` with the overrides ``over``, measured over ``steps`` training steps (their first
    third, which holds compilation and warm-up, left out); the calibration run's folder is deleted. Shared
    with gpu_target.py."""
    cal = {**over, "train.steps": str(steps), "train.log_every": str(steps // 3), "train.ckpt_every": str(steps)}
    train_run(preset=preset, out=run_dir, data_root=data_root, overrides=list(cal.items()), command=command)
    rate = statistics.median(window_rates(run_dir))
    shutil.rmtree(run_dir)
    return rate


def planned_steps(rate: float, batch: int, seconds: float, preset_steps: int, least: int = 1) -> int:
    """Steps that fill ``seconds`` at ``rate`` images/s, at most the preset's own length and at least ``least``."""
    return int(max(least, min(preset_steps, seconds * rate / batch)))


def run_preset(p: Preset, args, device: torch.device, peak: float | None) -> dict:
    smoke = args.smoke
    over = dict(p.smoke if smoke else p.gpu)
    over.update({"train.device": str(device), "train.precision": "bf16", "train.compile": "true",
                 "train.compile_backend": "eager" if smoke else "inductor", "train.compile_mode": args.compile_mode,
                 "train.progress": "false"})
    if smoke:
        over.update({"train.batch_size": "8"})
    cfg = resolve_train_config(preset=p.preset, data_root=args.data_root, overrides=list(over.items()))
    check = check_step(cfg, device)
    batch = cfg.train.batch_size
    if "train.ema_decay" not in over and cfg.train.ema_decay == 0:
        over["train.ema_decay"] = "0.999"
    if cfg.train.ema_warmup == "none":
        over["train.ema_warmup"] = "count"
    calibration = calibrate(p.preset, over, Path(args.out) / f"{p.name}-calibration", args.data_root,
                            6 if smoke else CALIBRATION_STEPS, f"benchmarks/gpu_suite.py {p.name} (calibration)")
    if args.profile:
        profile, table = profile_steps(cfg, device, steps=2 if smoke else 10, warmup=1 if smoke else 5)
        (Path(args.out) / f"profile-{p.name}.txt").write_text(table + "\n")
    if smoke:
        steps = 3
    else:  # the share of the budget at the measured rate
        steps = planned_steps(calibration, batch, p.seconds * args.time_scale, cfg.train.steps, least=200)
        over["train.max_seconds"] = str(1.5 * p.seconds * args.time_scale)
    over.update({"train.steps": str(steps), "train.log_every": str(max(1, min(steps // 10, 100))),
                 "train.ckpt_every": str(steps)})
    run_dir = Path(args.out) / p.name
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    result = train_run(preset=p.preset, out=run_dir, data_root=args.data_root, overrides=list(over.items()),
                       command=f"benchmarks/gpu_suite.py {p.name}")
    train_s = time.perf_counter() - began
    rates = window_rates(run_dir)
    images_s = statistics.median(rates)
    began = time.perf_counter()
    run = load(run_dir, str(device), data_root=args.data_root)
    opts = dict(SMOKE_EVAL) if smoke else dict(p.eval_gpu)
    evaluation = run.evaluate(only=list(p.evaluators), log=lambda line: None, **opts)
    eval_s = time.perf_counter() - began
    achieved = check["flops_per_image"] * images_s
    row = {"model": p.name, "preset": p.preset, "params": check["params"], "batch": batch, "steps_planned": steps,
           "calibration_images_per_s": calibration, "profile": profile if args.profile else None,
           "steps": result.step, "train_s": round(train_s, 2), "images_per_s": images_s,
           "images_per_s_windows": rates, "train_flops_per_image": check["flops_per_image"],
           "achieved_flops": achieved, "mfu": achieved / peak if peak else None, "eval_s": round(eval_s, 2),
           "quality": quality(evaluation), "autocast_dtypes": check["autocast_dtypes"]}
    if device.type == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def profile_text(profile: dict | None) -> str:
    if not profile:
        return ""
    busy = profile["device_busy_fraction"]
    return f"; profiled step {profile['step_ms']:.1f} ms" + (f", device busy {100 * busy:.0f}%" if busy is not None else "")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/gpu-suite", help="run folders and suite.json go here")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 3 steps, on the CPU (the tests run this)")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    parser.add_argument("--models", nargs="*", default=None, help=f"a subset of {[p.name for p in PRESETS]}")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, if not in the table")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every model's training share")
    parser.add_argument("--profile", action="store_true",
                        help="also profile 10 compiled steps per model: OUT/profile-MODEL.txt and the device's busy share")
    parser.add_argument("--compile-mode", default="default", choices=get_args(CompileMode),
                        help="torch.compile's mode for every model (train.compile_mode); reduce-overhead replays "
                             "the networks as CUDA graphs")
    parser.add_argument("--data-root", default=None, help="default: $GENLAB_DATA")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --smoke for the CPU check")
    name, peak, source = device_peak(device, args.peak_tflops)
    settings = cuda_settings(device)
    chosen = [p for p in PRESETS if not args.models or p.name in args.models]
    print(f"device {name}; peak {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s bf16 ({source}); "
          f"torch {torch.__version__}; {torch.get_num_threads()} CPU threads; {'SMOKE' if args.smoke else 'full'}")
    began = time.perf_counter()
    rows, failures = [], {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def write_report() -> dict:
        # Rewritten after every model, so a lease that ends mid-suite still leaves the finished rows.
        report = {"device": name, "peak_bf16_flops": peak, "peak_source": source, "torch": torch.__version__,
                  "smoke": args.smoke, "cuda_settings": settings if device.type == "cuda" else {},
                  "calibration_steps": CALIBRATION_STEPS, "budget_s": BUDGET_S, "time_scale": args.time_scale,
                  "cpu_threads": torch.get_num_threads(), "precision": "bf16 autocast",
                  "compile": "eager (trace only)" if args.smoke else "inductor", "compile_mode": args.compile_mode,
                  "presets": {p.name: asdict(p) for p in chosen}, "results": rows, "failures": failures,
                  "wall_s": round(time.perf_counter() - began, 1)}
        write_text_atomic(out / "suite.json", json.dumps(report, indent=1) + "\n")
        return report

    for p in chosen:
        try:
            row = run_preset(p, args, device, peak)
        except Exception as err:  # noqa: BLE001 - on a lent GPU one model's failure must not cost the others' figures
            if args.smoke:
                raise  # the CPU check in the tests must fail loudly
            failures[p.name] = "".join(traceback.format_exception(err))[-4000:]
            print(f"{p.name:15s} FAILED: {type(err).__name__}: {err}", flush=True)
            write_report()
            continue
        rows.append(row)
        q = "; ".join(f"{k} {v['value']:.2f} {v['unit']}".strip() for k, v in row["quality"].items())
        mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "n/a"
        print(f"{p.name:15s} {row['params'] / 1e6:6.2f}M  batch {row['batch']:4d}  {row['steps']:6d} steps  "
              f"{row['images_per_s']:10.0f} img/s  MFU {mfu:>6s}  train {row['train_s']:6.1f}s  "
              f"eval {row['eval_s']:6.1f}s  {q}{profile_text(row['profile'])}", flush=True)
        write_report()
    report = write_report()
    print(f"wall {report['wall_s']} s; wrote {out / 'suite.json'}")
    return report


if __name__ == "__main__":
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")  # a second run reuses the compiled kernels
    run_script(main, "gpu_suite.py")
