"""Objectives of the self-supervised encoders (genlab/models/self_supervised/), and their losses as pure functions.

Every objective returns per-example (B,) terms: ``loss`` and what it is made of (accuracy of the
pretext prediction, similarities, entropies). Augmentations and pretext transforms draw from one
generator per image, seeded from the global generator that genlab's loop reseeds at every step
(genlab/nn/ssl.py), so a resumed run repeats an uninterrupted one.

Objectives with state keep it here, saved in checkpoints through ``state_dict``/``load_state_dict``
(tensors only): MoCo's queue of keys, DINO's centre. Their momentum encoders are submodules of the
model (in its weights), moved by ``momentum_update`` once per training step, before the step's loss, so
that an evaluation pass (model in eval mode, or gradients off) changes neither the queue, the centre nor
the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.spec import DataSpec
from genlab.nn.ssl import (ViewsConfig, momentum_update, random_square_masks, random_view, rotations, shuffle_tiles,
                           step_generators, tiles_of)
from genlab.objectives.base import OptionlessObjective
from genlab.registry import OBJECTIVES


# ---- losses, as their formulas ----

def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalized temperature-scaled cross entropy (Chen et al. 2020, Eq. 1).

    With the 2B l2-normalised projections u (views 1 then 2) and s_ij = u_i . u_j / tau, the loss of
    anchor i whose partner is p(i) is -log(exp(s_ip) / sum_{k != i} exp(s_ik)).

    Returns:
        (B,) per image: the mean of its two anchors' losses.
    """
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    B = z1.shape[0]
    sim = u @ u.T / temperature
    sim = sim.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=u.device), float("-inf"))
    partner = torch.cat([torch.arange(B, 2 * B), torch.arange(B)]).to(u.device)
    per_anchor = F.cross_entropy(sim, partner, reduction="none")  # (2B,)
    return per_anchor.reshape(2, B).mean(0)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE (He et al. 2020, Eq. 1): -log(exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_n exp(q.k_n / tau))).

    Args:
        q, k: (B, D) queries and their positive keys; queue: (N, D) negative keys. All are l2-normalised here.
    Returns:
        (B,) losses.
    """
    q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / temperature  # (B, 1 + N): positive first
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device), reduction="none")


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """DINO's cross-view distillation loss (Caron et al. 2021, Eq. 3 and Algorithm 1).

    P_t = softmax((g_t - c) / tau_t) for each teacher (global) view, P_s = softmax(g_s / tau_s) for each
    student view; the loss is the mean over pairs of different views of -sum_K P_t log P_s.

    Args:
        student: V tensors (B, K) of student scores, the first len(teacher) of them the same global views
            the teacher saw; teacher: the teacher's (B, K) scores; center: (K,).
    Returns:
        (B,) losses.
    """
    targets = [F.softmax((t - center) / teacher_temp, dim=1) for t in teacher]
    logs = [F.log_softmax(s / student_temp, dim=1) for s in student]
    total, pairs = 0.0, 0
    for i, p in enumerate(targets):
        for j, log_q in enumerate(logs):
            if i != j:
                total = total + -(p * log_q).sum(1)
                pairs += 1
    return total / pairs


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == labels).float()


def _training(model) -> bool:
    """Whether this call is a training step: only then may state (queues, centres, teachers) move."""
    return model.training and torch.is_grad_enabled()


# ---- pretext tasks ----

@OBJECTIVES.register("rotation")
class RotationObjective(OptionlessObjective):
    """Cross entropy of the quarter turn, each image shown at all four (Gidaris et al. 2018). Terms:
    ``loss`` (nats, mean over the four), ``accuracy`` (fraction of the four named right)."""

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        x = batch["x"]
        turned, labels = rotations(x)
        logits = model(turned)
        B = x.shape[0]
        per_view = F.cross_entropy(logits, labels, reduction="none").reshape(4, B)
        return {"loss": per_view.mean(0), "accuracy": _accuracy(logits, labels).reshape(4, B).mean(0)}


@OBJECTIVES.register("jigsaw")
class JigsawObjective(OptionlessObjective):
    """Cross entropy of which permutation of the model's set shuffled the tiles (Noroozi & Favaro 2016);
    one uniformly drawn permutation per image. Terms: ``loss`` (nats), ``accuracy``."""

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        x = batch["x"]
        gens = step_generators(x.shape[0], x.device)
        n = model.perms.shape[0]
        labels = torch.stack([torch.randint(n, (), generator=g, device=x.device) for g in gens])
        logits = model(shuffle_tiles(tiles_of(x, model.cfg.grid), model.perms, labels))
        return {"loss": F.cross_entropy(logits, labels, reduction="none"), "accuracy": _accuracy(logits, labels)}


@OBJECTIVES.register("context-encoder")
class ContextEncoderObjective(OptionlessObjective):
    """Squared error on the masked square (Pathak et al. 2016, Eq. 1, the L2 reconstruction loss), summed
    over its sub-pixels on the [0, 1] scale. Terms: ``loss``; ``hole_mse`` (per sub-pixel of the hole);
    ``context_mse`` (per sub-pixel outside it: not trained, reported)."""

    @dataclass
    class Config:
        fill: float = bounded(0.5, ge=0.0, le=1.0)  # the value the hole is filled with (grey)

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        x = batch["x"]
        mask = random_square_masks(tuple(x.shape), model.hole_size, step_generators(x.shape[0], x.device), x.device)
        pred = torch.sigmoid(model(x * (1 - mask) + self.cfg.fill * mask))
        err = (pred - x).pow(2)
        hole = (err * mask).flatten(1).sum(1)
        inside = mask.expand_as(x).flatten(1).sum(1)
        outside = x[0].numel() - inside
        context = (err * (1 - mask)).flatten(1).sum(1) / outside.clamp(min=1)
        return {"loss": hole, "hole_mse": hole.detach() / inside, "context_mse": context.detach()}


# ---- contrastive and distillation ----

def _two_views(x: torch.Tensor, cfg: ViewsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    gens = step_generators(x.shape[0], x.device)
    return random_view(x, gens, cfg), random_view(x, gens, cfg)


@OBJECTIVES.register("simclr")
class SimCLRObjective(OptionlessObjective):
    """NT-Xent over two views of each image (Chen et al. 2020). Terms: ``loss`` (nats), ``positive_cosine``
    (cosine between an image's two projections)."""

    @dataclass
    class Config(ViewsConfig):
        temperature: float = bounded(0.5, gt=0.0)  # tau (paper: 0.5 suits small batches, Table 5)

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        v1, v2 = _two_views(batch["x"], self.cfg)
        z1, z2 = model(v1), model(v2)
        return {"loss": nt_xent(z1, z2, self.cfg.temperature),
                "positive_cosine": F.cosine_similarity(z1, z2, dim=1).detach()}


class _MomentumOnce:
    """Moves a model's momentum encoder once per training step (micro-batches of one step share it)."""

    def __init__(self):
        self.last_step: int | None = None

    def __call__(self, model, teacher: str, momentum: float, step: int) -> None:
        """teacher[name] <- momentum average with model.name, for the backbone and the head."""
        if self.last_step != step:
            for name in ("backbone", "head"):
                momentum_update(model.get_submodule(f"{teacher}.{name}"), model.get_submodule(name), momentum)
            self.last_step = step


@OBJECTIVES.register("moco")
class MoCoObjective(OptionlessObjective):
    """InfoNCE of a query against its key and a queue of earlier keys (He et al. 2020; MoCo v2 settings).
    Terms: ``loss`` (nats), ``accuracy`` (the positive key scores above every queued one).

    State: ``queue`` (N, D) keys, oldest overwritten first at ``ptr``. It starts with ``queue_size`` random
    unit vectors (Algorithm 1 of the paper initialises it at random), drawn on the first call.
    """

    @dataclass
    class Config(ViewsConfig):
        temperature: float = bounded(0.2, gt=0.0)  # tau (MoCo v2: 0.2)
        queue_size: int = bounded(4096, ge=1)  # K negative keys (paper 65536)
        momentum: float = bounded(0.99, ge=0.0, le=1.0)  # key-encoder momentum m (paper 0.999)

    def __init__(self, cfg=None, data: DataSpec | None = None):
        super().__init__(cfg, data)
        self.queue: torch.Tensor | None = None
        self.ptr = 0
        self._momentum = _MomentumOnce()

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        training = _training(model)
        if training:  # the key encoder follows the query encoder (paper, Algorithm 1)
            self._momentum(model, "momentum", self.cfg.momentum, step)
        v1, v2 = _two_views(batch["x"], self.cfg)
        q, k = model(v1), model.keys(v2)
        if self.queue is None:
            self.queue = F.normalize(torch.randn(self.cfg.queue_size, k.shape[1], device=k.device), dim=1)
        self.queue = queue = self.queue.to(k.device)
        loss = info_nce(q, k, queue, self.cfg.temperature)
        with torch.no_grad():
            qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
            accuracy = ((qn * kn).sum(1) > (qn @ F.normalize(queue, dim=1).T).max(1).values).float()
        if training:
            self._enqueue(kn)
        return {"loss": loss, "accuracy": accuracy}

    def _enqueue(self, keys: torch.Tensor) -> None:
        """Overwrite the oldest keys with this batch's (the queue is first in, first out)."""
        size = self.queue.shape[0]
        keys = keys.detach()[-size:]  # a batch larger than the queue keeps its last keys
        index = (self.ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[index] = keys
        self.ptr = int((self.ptr + keys.shape[0]) % size)

    def state_dict(self) -> dict[str, torch.Tensor]:
        queue = self.queue if self.queue is not None else torch.zeros(0)
        return {"queue": queue.detach().cpu().clone(), "ptr": torch.tensor(self.ptr)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        queue = state["queue"]
        if queue.numel() and queue.shape[0] != self.cfg.queue_size:
            raise InputError(f"the saved MoCo queue holds {queue.shape[0]} keys, not objective.queue_size="
                             f"{self.cfg.queue_size}")
        self.queue = queue.clone() if queue.numel() else None
        self.ptr = int(state["ptr"])


@OBJECTIVES.register("dino")
class DINOObjective(OptionlessObjective):
    """Cross-view distillation from the momentum teacher (Caron et al. 2021). Terms: ``loss`` (nats),
    ``teacher_entropy`` (nats, of the centred and sharpened teacher distribution; near 0 means collapse to
    one prototype, near log K to the uniform).

    State: ``center`` (K,), the running mean of the teacher's scores, zeros at the start.
    """

    @dataclass
    class Config(ViewsConfig):
        local_crops: int = bounded(2, ge=0)  # small crops seen by the student only (paper: 6 to 10)
        student_temperature: float = bounded(0.1, gt=0.0)  # tau_s (paper 0.1)
        teacher_temperature: float = bounded(0.04, gt=0.0)  # tau_t (paper 0.04, warmed up to 0.07)
        center_momentum: float = bounded(0.9, ge=0.0, le=1.0)  # m of the centre's moving average (paper 0.9)
        momentum: float = bounded(0.99, ge=0.0, le=1.0)  # teacher momentum (paper: 0.996 -> 1, cosine)

    def __init__(self, cfg=None, data: DataSpec | None = None):
        super().__init__(cfg, data)
        self.center: torch.Tensor | None = None
        self._momentum = _MomentumOnce()

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        c = self.cfg
        training = _training(model)
        if training:
            self._momentum(model, "teacher", c.momentum, step)
        x = batch["x"]
        gens = step_generators(x.shape[0], x.device)
        globals_ = [random_view(x, gens, c) for _ in range(2)]
        locals_ = [random_view(x, gens, c, area=(min(c.crop_min, c.local_crop_max) * 0.5, c.local_crop_max))
                   for _ in range(c.local_crops)]
        teacher = [model.teacher_scores(v) for v in globals_]
        student = [model(v) for v in globals_ + locals_]
        if self.center is None:
            self.center = torch.zeros(teacher[0].shape[1], device=x.device)
        center = self.center.to(x.device)
        loss = dino_loss(student, teacher, center, c.student_temperature, c.teacher_temperature)
        with torch.no_grad():
            p = F.softmax((teacher[0] - center) / c.teacher_temperature, dim=1)
            entropy = -(p * p.clamp_min(1e-12).log()).sum(1)
            if training:  # c <- m c + (1 - m) mean of the teacher's scores over the batch (both global views)
                self.center = center * c.center_momentum + (1 - c.center_momentum) * torch.cat(teacher).mean(0)
        return {"loss": loss, "teacher_entropy": entropy}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"center": (self.center if self.center is not None else torch.zeros(0)).detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.center = state["center"].clone() if state["center"].numel() else None
