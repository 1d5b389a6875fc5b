"""torch.compile of a model's networks: for training (``train.compile``) and for inference (``genlab.load(compile=)``)."""

from __future__ import annotations

import torch

# torch.compile modes that record CUDA graphs: a training step must tell them that a new iteration begins
# (`torch.compiler.cudagraph_mark_step_begin`); in inference each call of a compiled network begins one by itself.
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def compile_submodules(model: torch.nn.Module, backend: str = "inductor", mode: str = "default") -> bool:
    """torch.compile each top-level submodule in place; the model's own methods (samplers' loops, objectives)
    stay eager around them. Returns whether the mode records CUDA graphs (pass it to ``train_step``)."""
    for child in model.children():
        child.compile(backend=backend, mode=None if mode == "default" else mode)
    return mode in CUDA_GRAPH_MODES


def compile_for_inference(model: torch.nn.Module, mode: str, backend: str = "inductor") -> None:
    """torch.compile each top-level submodule's forward in place for sampling and evaluation.

    In a CUDA-graph mode each call's outputs are copied out of the graph's memory on return: the next replay
    overwrites that memory, and a sampler may keep an output across calls (DPM-Solver++ keeps the last x_0
    estimate, which an x_0-predicting network returns as it is). One copy per call is small beside the kernel
    launches the graph saves. The copy sits outside the compiled function, where a graph cannot absorb it.
    """
    graphs = mode in CUDA_GRAPH_MODES
    for child in model.children():
        compiled = torch.compile(child.forward, backend=backend, mode=None if mode == "default" else mode)
        child.forward = _copying_outputs(compiled) if graphs else compiled


def _copying_outputs(fn):
    def call(*args, **kwargs):
        return _copied(fn(*args, **kwargs))
    return call


def _copied(out):
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, (tuple, list)):
        return type(out)(_copied(o) for o in out)
    if isinstance(out, dict):
        return {k: _copied(v) for k, v in out.items()}
    return out
