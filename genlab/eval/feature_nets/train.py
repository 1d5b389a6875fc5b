"""The fixed recipe that trains genlab's feature networks, and the function that runs it.

Run it with ``genlab features train --data mnist`` (or call ``train_feature_net``). It
writes ``<name>.safetensors`` and a manifest entry (sha256, test accuracy, feature
dimension, recipe) into ``out_dir``; the shipped copies live in ``genlab/weights/``.

The test split is used once, after the last epoch, to report accuracy: no model
selection or early stopping looks at it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genlab.eval.feature_nets.lenet import LeNet, LeNetConfig
from genlab.eval.feature_nets.spoken_digits import SpokenDigitConfig, SpokenDigitNet
from genlab.nn.modes import eval_mode
from genlab.nn.spec import Phase
from genlab.train.step import PhaseOptimizers, train_step


@dataclass
class Recipe:
    """Optimizer, schedule and augmentation of one feature network's training."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"  # torch.optim.AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101)
    lr: float = 3e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 5e-4  # decoupled, on every parameter
    warmup_fraction: float = 0.15  # linear warm-up share of the steps, then cosine decay to 0
    label_smoothing: float = 0.0  # cross-entropy target smoothing (Szegedy et al. 2016, arXiv:1512.00567)
    max_shift: int = 2  # random translation of each training image by up to this many pixels
    hflip: bool = False  # random horizontal flips (only where the classes are mirror-symmetric)

    def describe(self) -> str:
        aug = f"random shifts up to {self.max_shift} px" if self.max_shift else "no shifts"
        if self.hflip:
            aug += ", random horizontal flips"
        return (
            f"{self.optimizer} lr {self.lr:g} (one-cycle: {self.warmup_fraction:.0%} linear warm-up, cosine to 0), "
            f"weight decay {self.weight_decay:g}, batch {self.batch_size}, {self.epochs} epochs, "
            f"label smoothing {self.label_smoothing:g}, {aug}; final weights (no early stopping)"
        )


Arch = LeNetConfig | SpokenDigitConfig
NETS = {LeNetConfig: LeNet, SpokenDigitConfig: SpokenDigitNet}  # an architecture's config -> its network


def build_net(arch: Arch) -> torch.nn.Module:
    """The (untrained) network of an architecture config: a LeNet for images, a SpokenDigitNet for audio."""
    return NETS[type(arch)](arch)


@dataclass(frozen=True)
class FeatureNetSpec:
    """A versioned feature network: what it is trained on, its architecture and recipe."""

    name: str  # e.g. "mnist-lenet-v1": the suffix of metric names (fid_mnist-lenet-v1)
    dataset: str  # the registry name of the training data
    version: int
    arch: Arch
    recipe: Recipe


def lr_at(step: int, total: int, recipe: Recipe) -> float:
    """One-cycle schedule: linear warm-up to ``recipe.lr``, then cosine decay to 0."""
    warm = max(1, int(recipe.warmup_fraction * total))
    if step < warm:
        return recipe.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def augment(x: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """Random integer translations (zero fill) and optional horizontal flips of (B, C, H, W)."""
    if not recipe.max_shift and not recipe.hflip:
        return x  # no augmentation (the audio networks): any shape passes
    b, _, h, w = x.shape
    if recipe.max_shift > 0:
        s = recipe.max_shift
        padded = F.pad(x, (s, s, s, s))
        oy = torch.randint(0, 2 * s + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * s + 1, (b,), generator=generator)
        rows = (oy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
        cols = (ox[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
        batch = torch.arange(b)[:, None, None]
        # Advanced indices around a slice put the indexed dims first: (B, H, W, C).
        x = padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()
    if recipe.hflip:
        flip = torch.rand(b, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent of ``net`` (eval mode) on float inputs ``x`` (N, *input_shape)."""
    correct = 0
    with eval_mode(net):
        for start in range(0, len(x), batch_size):
            correct += (net(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum().item()
    return 100.0 * correct / len(x)


def fit(arch: Arch, recipe: Recipe, x_train: torch.Tensor, y_train: torch.Tensor, seed: int,
        log=print) -> torch.nn.Module:
    """Train the network of ``arch`` on float inputs in [0, 1] (N, *input_shape) with integer labels (N,).

    Everything random (initialization, batch order, augmentation, dropout) is drawn
    from ``seed``; the global RNG state is restored afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_net(arch)
        gen = torch.Generator().manual_seed(seed + 1)
        opts = PhaseOptimizers(net, [Phase("main")], lambda params: torch.optim.AdamW(
            params, lr=recipe.lr, weight_decay=recipe.weight_decay))

        def objective(model, batch, phase, step):
            return {"loss": F.cross_entropy(model(batch["x"]), batch["y"], reduction="none",
                                            label_smoothing=recipe.label_smoothing)}

        n = len(x_train)
        steps_per_epoch = n // recipe.batch_size  # the last partial batch is dropped
        total = recipe.epochs * steps_per_epoch
        step = 0
        t0 = time.time()
        net.train()
        for epoch in range(recipe.epochs):
            order = torch.randperm(n, generator=gen)
            loss_sum = 0.0
            for i in range(steps_per_epoch):
                idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
                batch = {"x": augment(x_train[idx], recipe, gen), "y": y_train[idx]}
                result = train_step(net, objective, [batch], step, opts, lr=lr_at(step, total, recipe))["main"]
                loss_sum += result.terms["loss"].item()
                step += 1
            log(f"epoch {epoch + 1}/{recipe.epochs}: train loss {loss_sum / steps_per_epoch:.4f} "
                f"({time.time() - t0:.0f} s)")
        net.eval()
    return net
