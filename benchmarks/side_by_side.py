"""Timing two implementations of the same work side by side: alternating windows in one process.

On a shared machine the load changes from second to second; timing A for a minute and then B
for a minute compares the load as much as the code. Here the windows alternate (A B, B A, A B...,
so neither is always first), each pair gives one ratio, and the summary is the median ratio with
its range and the load average seen, so a reader can tell a 1.1x from noise.

Each window is timed twice: wall-clock seconds, and this process's CPU seconds (user + system, all
its threads). When other jobs share the cores, wall time counts the time the scheduler gave to them;
CPU time does not (at one thread it is the work done), so at one thread the CPU-time ratio is the
steadier figure on a loaded machine and the wall-clock ratio the one a user sees on an idle one.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from typing import Callable


def torch_device(name: str):
    """A torch.device, refusing cuda where there is none (one line, not a traceback from deep inside)."""
    import torch

    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    return device


def device_sync(device) -> Callable[[], None]:
    """What ``alternate`` calls after each window: waits for a GPU's queue; nothing on a CPU."""
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def alternate(first: Callable[[], None], second: Callable[[], None], pairs: int,
              sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Wall and CPU seconds of each call of ``first`` and ``second``, alternating, ``pairs`` times each (after one
    untimed warm-up call of both, so lazy initialization and allocator growth are not timed). ``sync`` runs
    after each call, inside its time: a GPU's queue is drained, so a window counts its own work.

    Returns:
        {"first", "second"}: wall seconds per call; {"first_cpu", "second_cpu"}: process CPU seconds per call;
        {"first_warmup", "second_warmup"}: the wall seconds of each warm-up call.
    """
    times = {"first": [], "second": [], "first_cpu": [], "second_cpu": []}
    for fn, key in ((first, "first"), (second, "second")):
        wall = time.perf_counter()
        fn()
        sync()
        times[key + "_warmup"] = time.perf_counter() - wall  # a compiled network's compilation lands here
    for i in range(pairs):
        order = [(first, "first"), (second, "second")] if i % 2 == 0 else [(second, "second"), (first, "first")]
        for fn, key in order:
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            sync()
            times[key].append(time.perf_counter() - wall)
            times[key + "_cpu"].append(time.process_time() - cpu)
    return times


def ratio_summary(numerator: list[float], denominator: list[float]) -> dict:
    """Pairwise ratios numerator[i] / denominator[i]: median, min, max and their count."""
    ratios = [n / d for n, d in zip(numerator, denominator)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "pairs": len(ratios)}


def describe(summary: dict) -> str:
    return (f"{summary['median']:.2f}x (range {summary['min']:.2f}-{summary['max']:.2f} over "
            f"{summary['pairs']} alternating pairs)")


def compare(times: dict[str, list[float]], ours: str, theirs: str, work: float, unit: str) -> str:
    """One line: each side's best rate (``work`` per call, in ``unit``), and theirs / ours in wall and CPU time."""
    wall = ratio_summary(times["second"], times["first"])
    cpu = ratio_summary(times["second_cpu"], times["first_cpu"])
    return (f"{ours} {work / min(times['first']):.1f} {unit}, {theirs} {work / min(times['second']):.1f} {unit} "
            f"(best wall window); {theirs} time / {ours} time: wall {describe(wall)}, CPU {describe(cpu)}; "
            f"{load_average()}")


def add_timing_arguments(parser, batch_size: int, window: int) -> None:
    """The options every side-by-side script shares: threads, batch, steps per timed window, pairs."""
    parser.add_argument("--threads", type=int, default=None, help="default: torch's, one per core")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--window", type=int, default=window, help="training steps per timed window")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="where both libraries run: cpu (default) or cuda")


def add_compile_arguments(parser, peer: str | None) -> None:
    """``--compile [MODE]``: genlab's networks compiled as ``train.compile`` (and ``genlab.load(compile=)``) compile
    them; with a ``peer`` name, ``--peer-compile`` compiles the peer's network in the same mode (torch.compile, as a
    user of that library would), so a compiled genlab meets an eager and a compiled peer."""
    from typing import get_args

    from genlab.config import CompileMode

    parser.add_argument("--compile", nargs="?", const="default", default=None, choices=get_args(CompileMode),
                        metavar="MODE", help="compile genlab's networks in this torch.compile mode (bare: default; "
                        "reduce-overhead: CUDA graphs on a GPU); the compilation falls in the untimed warm-up calls")
    if peer:
        parser.add_argument("--peer-compile", action="store_true",
                            help=f"compile {peer}'s network too, in the same mode (needs --compile)")


def compile_as_asked(args, trainer: "GenlabTrainer", peer_net) -> str:
    """Compile genlab's networks (``--compile``) and the peer's (``--peer-compile``, torch.compile in the same mode,
    as its user would) in place; returns what runs, in words. Call it after ``same_size``: a network first called
    under its FLOP counter (a dispatch mode) is left uncompiled by torch.compile for good."""
    import copy

    from genlab.nn.compiled import CUDA_GRAPH_MODES, compile_for_inference

    if args.compile:
        # genlab samples from a copy compiled as genlab.load(compile=) compiles (outputs copied out of CUDA graphs)
        trainer.sampling_model = copy.deepcopy(trainer.model)
        compile_for_inference(trainer.sampling_model, args.compile)
        trainer.compile(args.compile)
    if args.peer_compile:
        peer_net.compile(mode=None if args.compile == "default" else args.compile)
        trainer.peer_cuda_graphs = args.compile in CUDA_GRAPH_MODES
    return f"genlab {args.compile or 'eager'}, the peer {args.compile if args.peer_compile else 'eager'}"


def warmup_line(times: dict, ours: str, theirs: str) -> str:
    """The untimed first calls (where compilation happens): wall seconds of each side."""
    return f"warm-up calls (compilation included): {ours} {times['first_warmup']:.1f} s, {theirs} " \
           f"{times['second_warmup']:.1f} s"


def same_size(ours, theirs, peer: str, inputs: tuple, tolerance: float = 0.02) -> None:
    """Check that two networks have the same number of weights within ``tolerance``; print the counts and the
    FLOPs of one forward pass of each on ``inputs`` (counted by torch.utils.flop_counter: equal weights need
    not mean equal work). Leaves both networks in evaluation mode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    n_ours, n_theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
    if abs(n_ours / n_theirs - 1) > tolerance:
        raise SystemExit(f"the networks differ in size: genlab {n_ours:,} weights, {peer} {n_theirs:,}")
    flops = []
    for net in (ours, theirs):
        net.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(*inputs)
        flops.append(counter.get_total_flops() / 1e6)
    print(f"networks: genlab {n_ours:,} weights, {flops[0]:.1f} MFLOP a forward pass; {peer} {n_theirs:,} weights, "
          f"{flops[1]:.1f} MFLOP (inputs of shapes {[tuple(x.shape) for x in inputs]})")


def diffusion_side_by_side_setup(description: str):
    """What the diffusion side-by-side scripts share before their peer: the options (timing, DDIM sampling,
    data root), torch's threads, and genlab's `ddpm-mnist` training parts at the chosen batch.

    Returns:
        (args, start time, GenlabTrainer)
    """
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_arguments(parser, batch_size=64, window=5)
    add_compile_arguments(parser, peer="the peer")
    parser.add_argument("--nfe", type=int, nargs="*", default=[10, 50], help="DDIM steps (network evaluations)")
    parser.add_argument("--samples", type=int, default=64, help="images per sampling window (one batch)")
    parser.add_argument("--sample-pairs", type=int, default=3)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    if args.peer_compile and not args.compile:
        parser.error("--peer-compile compiles the peer in genlab's mode: give --compile [MODE] too")
    began = start(args.threads)
    return args, began, GenlabTrainer("ddpm-mnist", args.data_root, [("train.batch_size", str(args.batch_size))],
                                      args.device)


def start(threads: int | None) -> float:
    """Set torch's threads (None: its default, one per core), print what runs; returns the start time."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {load_average()}")
    return time.perf_counter()


class GenlabTrainer:
    """A preset's network, objective, Adam and batches, stepped by genlab's training step in timed windows.

    Args:
        preset: a name from `genlab models --presets`.
        overrides: (key, value) pairs on top of the preset.
    """

    def __init__(self, preset: str, data_root: str | None, overrides: list[tuple[str, str]], device: str = "cpu"):
        from genlab.configs import resolve_train_config
        from profile_step import step_parts  # here, not at the top: profile_step imports this module

        self.cfg = resolve_train_config(preset=preset, data_root=data_root, overrides=overrides)
        # as genlab's loop builds them: seed 0, the run's memory layout, make_optimizer's Adam
        self.device = device = torch_device(device)
        self.model, self.objective, self.stream, self.opts = step_parts(self.cfg, device)
        self.cuda_graphs = self.peer_cuda_graphs = False  # set by compile() and by a script compiling its peer
        self.sampling_model = self.model  # what ddim_side_by_side draws from (a compiled copy with --compile)

    def compile(self, mode: str) -> None:
        """Compile genlab's networks in ``mode`` as ``train.compile`` does (each top-level submodule)."""
        from genlab.nn.compiled import compile_submodules

        self.cuda_graphs = compile_submodules(self.model, mode=mode)

    def optimizer(self, params):
        """The run's optimizer (genlab's make_optimizer) over ``params``: the peer gets the same one."""
        from genlab.train.loop import make_optimizer

        return make_optimizer(self.cfg, list(params))

    def steps(self, first: int, n: int) -> None:
        """Training steps first .. first + n - 1 on the stream's batches of those steps."""
        from genlab.train.step import train_step

        for s in range(first, first + n):
            train_step(self.model, self.objective, self.stream.micro_batches(s), s, self.opts,
                       cuda_graphs=self.cuda_graphs)

    def batch(self, step: int):
        """The images (B, C, H, W) in [0, 1] genlab's step ``step`` trains on."""
        return self.stream.micro_batches(step)[0]["x"]

    def window_pair(self, window: int, peer_optimizer, peer_loss) -> tuple[Callable[[], None], Callable[[], None]]:
        """Two callables for ``alternate``: each runs the next ``window`` training steps, genlab's or the peer's
        (``peer_steps`` with ``peer_optimizer`` and ``peer_loss``), so both see the same batches in turn."""
        done = {"genlab": 0, "peer": 0}

        def genlab_window():
            self.steps(done["genlab"] + 1, window)
            done["genlab"] += window

        def peer_window():
            self.peer_steps(peer_optimizer, peer_loss, done["peer"] + 1, window)
            done["peer"] += window

        return genlab_window, peer_window

    def peer_steps(self, optimizer, loss_of, first: int, n: int) -> None:
        """A peer's training steps on the same batches as genlab's steps first .. first + n - 1:
        zero the gradients, backpropagate ``loss_of(images)`` (a 0-d tensor), step ``optimizer``."""
        import torch

        for s in range(first, first + n):
            if self.peer_cuda_graphs:  # as genlab's train_step does: the last step's graph outputs may be reused
                torch.compiler.cudagraph_mark_step_begin()
            optimizer.zero_grad(set_to_none=True)
            loss_of(self.batch(s)).backward()
            optimizer.step()


def ddim_side_by_side(model, peer: str, peer_sample: Callable[[int], None], nfes: list[int], samples: int,
                      pairs: int, device) -> None:
    """Deterministic DDIM at each NFE, ``samples`` images in one batch on ``device``: genlab's ``ddim`` sampler
    (each image's noise from its own generator) against ``peer_sample(nfe)``, alternating; one line per NFE."""
    from genlab.sampling.api import draw

    for nfe in nfes:
        def genlab_sample():
            draw(model, samples, 0, device, batch_size=samples, sampler="ddim", steps=nfe)

        times = alternate(genlab_sample, lambda: peer_sample(nfe), pairs, device_sync(device))
        print(f"DDIM NFE {nfe}, {samples} images:", compare(times, "genlab", peer, samples, "img/s"), flush=True)
        print("  " + warmup_line(times, "genlab", peer), flush=True)
