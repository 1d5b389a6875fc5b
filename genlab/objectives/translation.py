"""The CycleGAN objective: least-squares adversarial, cycle and identity losses, with image histories.

Zhu et al. 2017 (arXiv:1703.10593), Sec. 3 and 4. With G: A -> B, F: B -> A and batches
a (domain A, ``x``) and b (domain B, ``x_b``), per example:

* phase ``G`` (both translators): (D_B(G(a)) - 1)^2 + (D_A(F(b)) - 1)^2
  + lambda_cyc (s_a |F(G(a)) - a| + s_b |G(F(b)) - b|) + lambda_cyc lambda_idt (|G(b) - b| + |F(a) - a|),
  squares and absolute values averaged over patches and pixels (the paper's MSE and L1);
  the per-cycle scales s_a = ``cycle_scale_a`` and s_b = ``cycle_scale_b`` are 1 in the paper;
  the adversarial term is twice genlab's ``lsgan`` generator loss (which halves it);
* phase ``D`` (both critics): genlab's ``lsgan`` discriminator loss
  (r - 1)^2 / 2 + f^2 / 2 for D_A and for D_B, where the fakes come from a history of
  ``pool_size`` (50) earlier translations (Shrivastava et al. 2017, arXiv:1612.07828).

The histories are the objective's state (``state_dict``/``load_state_dict``: tensors only),
saved in checkpoints so that a resumed run repeats an uninterrupted one. They change only
while the model is in training mode: an evaluation pass leaves them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.spec import DataSpec
from genlab.objectives.adversarial import discriminator_loss, generator_loss
from genlab.registry import OBJECTIVES


def _per_example(t: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch: (B, ...) -> (B,)."""
    return t.flatten(1).mean(1)


class ImageHistory:
    """A buffer of up to ``size`` generated images that a discriminator is shown instead of the newest ones.

    ``query(images)`` returns a batch of the same shape: while the buffer is not full every
    image is stored and returned; after that, each image is, with probability ``swap``,
    exchanged for a uniformly chosen stored one (which is returned and replaced), else returned
    itself. Draws come from the global torch generator, which genlab's loop reseeds at every step.
    """

    def __init__(self, size: int = 50, swap: float = 0.5):
        self.size, self.swap = size, swap
        self.images: torch.Tensor | None = None  # (size, C, H, W), the first ``count`` rows in use
        self.count = 0

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        images = images.detach()
        if self.images is None:
            self.images = images.new_zeros((self.size, *images.shape[1:]))
        out = images.clone()
        for i in range(images.shape[0]):
            if self.count < self.size:
                self.images[self.count] = images[i]
                self.count += 1
            elif torch.rand(()).item() < self.swap:
                j = int(torch.randint(self.size, ()).item())
                out[i] = self.images[j]
                self.images[j] = images[i]
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        stored = self.images[:self.count] if self.images is not None else torch.zeros(0)
        return {"images": stored.clone(), "count": torch.tensor(self.count)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.count = int(state["count"])
        if self.count > self.size:
            raise InputError(f"the saved image history holds {self.count} images, more than pool_size={self.size}")
        stored = state["images"]
        self.images = None
        if self.count:
            self.images = stored.new_zeros((self.size, *stored.shape[1:]))
            self.images[:self.count] = stored[:self.count]


@OBJECTIVES.register("cyclegan")
class CycleGANObjective:
    """Terms, each (B,): ``loss``; phase G: ``adv_ab``, ``adv_ba``, ``cycle_a``, ``cycle_b``, ``identity_a``,
    ``identity_b`` (unweighted, per pixel); phase D: ``d_a``, ``d_b`` (each critic's loss)."""

    @dataclass
    class Config:
        lambda_cyc: float = bounded(10.0, ge=0.0)  # weight of the cycle loss (paper: 10)
        lambda_idt: float = bounded(0.5, ge=0.0)  # identity-loss weight, relative to lambda_cyc (paper: 0.5)
        # Each cycle's weight relative to lambda_cyc (paper: 1 and 1). Lower one where its first map must lose
        # information: colour -> grey drops the colours, so G(F(b)) = b is reachable only if F hides the colours
        # in its grey images for G to decode; lowering cycle_scale_b let colour -> grey keep the digit more often
        # (README, "Unpaired translation": 51 % -> 66 % at 800 steps, one seed).
        cycle_scale_a: float = bounded(1.0, ge=0.0)  # the cycle a -> b -> a
        cycle_scale_b: float = bounded(1.0, ge=0.0)  # the cycle b -> a -> b
        pool_size: int = bounded(50, ge=0)  # generated images kept per discriminator (paper: 50; 0: none)
        pool_swap: float = bounded(0.5, ge=0.0, le=1.0)  # chance a new image is exchanged for a stored one

    def __init__(self, cfg: Config | None = None, data: DataSpec | None = None):
        self.cfg = cfg if cfg is not None else self.Config()
        self.data = data
        if data is not None and data.channels_b and self.cfg.lambda_idt > 0:
            # G(b) ~ b compares images of two formats when the domains differ in channels (grey <-> colour).
            raise InputError(f"the identity loss needs both domains in one format, but domain A has {data.channels} "
                             f"channel(s) and domain B {data.channels_b}: set objective.lambda_idt=0")
        self.history = {"a": ImageHistory(self.cfg.pool_size, self.cfg.pool_swap),
                        "b": ImageHistory(self.cfg.pool_size, self.cfg.pool_swap)}

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        if "x_b" not in batch:
            raise InputError("the cyclegan objective needs batches from two domains: set data.domain_b")
        a, b = batch["x"], batch["x_b"]
        if phase == "G":
            return self._translator_terms(model, a, b)
        if phase == "D":
            return self._critic_terms(model, a, b)
        raise InputError(f"the cyclegan objective has phases 'G' and 'D', not {phase!r}")

    def _translator_terms(self, model, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        fake_b, fake_a = model.translate(a, "a2b"), model.translate(b, "b2a")
        # The paper's MSE to 1 is twice genlab's lsgan generator term (f - 1)^2 / 2.
        adv_ab = _per_example(2 * generator_loss("lsgan", model.critic_of("b")(fake_b)))
        adv_ba = _per_example(2 * generator_loss("lsgan", model.critic_of("a")(fake_a)))
        cycle_a = _per_example((model.translate(fake_b, "b2a") - a).abs())
        cycle_b = _per_example((model.translate(fake_a, "a2b") - b).abs())
        terms = {"adv_ab": adv_ab, "adv_ba": adv_ba, "cycle_a": cycle_a, "cycle_b": cycle_b}
        c = self.cfg
        loss = adv_ab + adv_ba + c.lambda_cyc * (c.cycle_scale_a * cycle_a + c.cycle_scale_b * cycle_b)
        if c.lambda_idt > 0:  # G(b) ~ b and F(a) ~ a: keeps colours when they need not change
            terms["identity_a"] = _per_example((model.translate(a, "b2a") - a).abs())
            terms["identity_b"] = _per_example((model.translate(b, "a2b") - b).abs())
            loss = loss + c.lambda_cyc * c.lambda_idt * (terms["identity_a"] + terms["identity_b"])
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}

    def _critic_terms(self, model, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # no graph through the translators: this phase moves the critics only
            fake_b, fake_a = model.translate(a, "a2b"), model.translate(b, "b2a")
        if model.training:  # evaluation passes leave the histories alone
            fake_b, fake_a = self.history["b"].query(fake_b), self.history["a"].query(fake_a)
        d_b = _per_example(discriminator_loss("lsgan", model.critic_of("b")(b), model.critic_of("b")(fake_b)))
        d_a = _per_example(discriminator_loss("lsgan", model.critic_of("a")(a), model.critic_of("a")(fake_a)))
        return {"loss": d_a + d_b, "d_a": d_a.detach(), "d_b": d_b.detach()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The two image histories as tensors: ``history_a/images`` (n, C, H, W), ``history_a/count``..."""
        return {f"history_{d}/{k}": v for d, h in self.history.items() for k, v in h.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for d, h in self.history.items():
            h.load_state_dict({k: state[f"history_{d}/{k}"] for k in ("images", "count")})
