"""Where a training step's time goes: torch.profiler over genlab's training step of preset models.

    python benchmarks/profile_step.py [--presets vae-binarized-mnist ...] [--steps 5] [--threads N] [--compile]
                                      [--set KEY=VALUE ...]

For each preset: the network, objective, optimizer and batches of the preset (batch size from the
preset unless --batch-size), a few warm-up steps, then ``--steps`` steps of `genlab.train.step.train_step`
(the step the loop runs) under the CPU profiler. Prints the operators with the largest self time,
the share of the step in the optimizer (`Optimizer.step`), and the peak resident memory. `--compile`
compiles each top-level submodule as `train.compile=true` does (the warm-up steps compile; inductor's
generated kernels then show as `CompiledFxGraph` rows); `--set` overrides the presets as `genlab train --set`.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from torch.profiler import ProfilerActivity, profile

import genlab  # noqa: F401
from genlab.allocator import keep_freed_memory
from genlab.configs import resolve_train_config
from genlab.data import load_dataset
from genlab.data.loader import BatchStream
from genlab.train.loop import make_optimizer
from genlab.train.run import build_model, build_objective, to_run_layout
from genlab.nn.compiled import compile_submodules
from genlab.train.step import PhaseOptimizers, train_step

from runs_common import run_script
from side_by_side import device_sync, load_average, peak_rss_mib

PRESETS = ["vae-binarized-mnist", "gated-pixelcnn-binarized-mnist", "ddpm-mnist"]


def step_parts(cfg, device: torch.device = torch.device("cpu")):
    """The model (in the run's memory layout), objective, device-resident batch stream and optimizers of one
    training step, built as the loop builds them (uncompiled; seed 0), in a process whose malloc is tuned as the
    loop tunes it (`genlab.allocator`). Shared by this script, gpu_suite.py and host_overhead.py."""
    keep_freed_memory()
    data = load_dataset(cfg.data.name, "train", cfg.data)
    torch.manual_seed(0)
    model = to_run_layout(build_model(cfg, data.spec).to(device), cfg)
    objective = build_objective(cfg, data.spec)
    stream = BatchStream(data.to(device), cfg.train.batch_size, 1, 0)
    opts = PhaseOptimizers(model, model.phases(), lambda params: make_optimizer(cfg, params))
    return model, objective, stream, opts


def step_runner(model, objective, stream, opts, device: torch.device = torch.device("cpu"), autocast=None,
                cuda_graphs: bool = False, grad_clip: float = 0.0):
    """run(first, last, wait=True): the loop's training steps first..last-1 of these parts, then (with wait)
    a wait for the device, so a clock read after it counts the work. Shared by this script,
    gpu_suite.py and host_overhead.py."""
    model.train()
    sync = device_sync(device)

    def run(first: int, last: int, wait: bool = True) -> None:
        for s in range(first, last):
            train_step(model, objective, stream.micro_batches(s), s, opts, grad_clip=grad_clip, autocast=autocast,
                       cuda_graphs=cuda_graphs)
        if wait:
            sync()
    return run


def profiled_steps(model, objective, stream, opts, warmup: int, steps: int, device: torch.device = torch.device("cpu"),
                   autocast=None, cuda_graphs: bool = False):
    """``warmup`` untimed training steps (compilation, caches), then ``steps`` under torch.profiler (CPU, and
    CUDA on a GPU), waiting for the device before the clock stops. Shared by this script and gpu_suite.py.

    Returns:
        (events, seconds): the profiler's key averages and the wall time per profiled step.
    """
    run = step_runner(model, objective, stream, opts, device, autocast, cuda_graphs)
    run(0, warmup)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        began = time.perf_counter()
        run(warmup, warmup + steps)
        seconds = (time.perf_counter() - began) / steps
    return prof.key_averages(), seconds


def kernel_work(model, objective, stream, opts, warmup: int, steps: int) -> dict:
    """What ``steps`` unprofiled training steps (after ``warmup``) cost the kernel, per step: pages it had to
    map in ("minor_faults") and CPU seconds spent there ("system_s"). Unprofiled: the profiler allocates too."""
    run = step_runner(model, objective, stream, opts)
    run(0, warmup)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    run(warmup, warmup + steps)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"minor_faults": (after.ru_minflt - usage.ru_minflt) / steps, "system_s": (after.ru_stime - usage.ru_stime) / steps}


def profile_preset(name: str, steps: int, batch_size: int | None, data_root, rows: int, compiled: bool = False,
                   overrides: list[str] = ()) -> None:
    over = list(overrides) + ([f"train.batch_size={batch_size}"] if batch_size else [])
    cfg = resolve_train_config(preset=name, data_root=data_root, overrides=over)
    model, objective, stream, opts = step_parts(cfg)
    if compiled:
        compile_submodules(model)  # what the training loop does with train.compile=true
    kernel = kernel_work(model, objective, stream, opts, warmup=2, steps=steps)
    events, _ = profiled_steps(model, objective, stream, opts, warmup=0, steps=steps)
    total = sum(e.self_cpu_time_total for e in events)
    optim = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step"))
    how = "".join(f", {o}" for o in overrides) + (", compiled" if compiled else "")
    print(f"\n== {name}: batch {cfg.train.batch_size}{how}, {steps} steps, {total / 1e6 / steps:.3f} s/step of CPU time "
          f"(self, all threads' ops); optimizer {100 * optim / total:.1f} %; per step {kernel['minor_faults']:.0f} "
          f"minor page faults and {1e3 * kernel['system_s']:.1f} ms in the kernel without the profiler (malloc: "
          f"{keep_freed_memory()}); "
          f"peak RSS {peak_rss_mib():.0f} MiB; {load_average()}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=48))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=PRESETS)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's, one per core")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--compile", action="store_true", help="compile each top-level submodule (train.compile=true)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of every preset, as `genlab train --set` (repeatable)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.presets:
        profile_preset(name, args.steps, args.batch_size, args.data_root, args.rows, args.compile, args.overrides)


if __name__ == "__main__":
    run_script(main, "profile_step.py")
