"""Training-time penalties added to any objective's loss (``optim.spectral_reg``).

``SpectralRegularized`` wraps the run's objective: on a training step (model in training mode,
gradients on) it adds lambda * sum sigma(W) over the convolution weights of the phase's modules
to every example's loss, sigma estimated by power iteration (``genlab/nn/spectral.py``), and
reports the sum as the term ``spectral_norm_sum``. Its vectors u are the wrapper's state, saved in
the checkpoint with the inner objective's (``state_dict``), so a resumed run continues exactly.
An evaluation pass adds nothing and moves no u.
"""

from __future__ import annotations

import torch

from genlab.nn.spectral import conv_weights, initial_vector, power_iteration
from genlab.rng import sample_seed

COLD_ITERATIONS = 10  # power iterations from a fresh random u (a warm u takes optim.spectral_iterations)


class SpectralRegularized:
    """``objective`` with lambda * sum_conv sigma(W) added to its loss on training steps."""

    def __init__(self, objective, coefficient: float, iterations: int = 1, seed: int = 0):
        self.objective, self.coefficient, self.iterations, self.seed = objective, coefficient, iterations, seed
        self.u: dict[str, torch.Tensor] = {}

    def _weights(self, model, phase: str) -> dict[str, torch.Tensor]:
        modules = next((ph.modules for ph in model.phases() if ph.name == phase), None)
        if modules is None:
            return conv_weights(model)
        return {f"{m}.{k}": w for m in modules for k, w in conv_weights(model.get_submodule(m)).items()}

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        terms = self.objective(model, batch, phase, step)
        if not (model.training and torch.is_grad_enabled()):
            return terms
        total = terms["loss"].new_zeros(())
        for i, (name, w) in enumerate(sorted(self._weights(model, phase).items())):
            step_seen = name in self.u
            if not step_seen:  # a fresh u per weight, seeded so that every process starts alike
                self.u[name] = initial_vector(w, torch.Generator().manual_seed(sample_seed(self.seed, i)))
            # A cold u needs a few iterations; afterwards one per step tracks sigma (Miyato et al.).
            iterations = self.iterations if step_seen else max(self.iterations, COLD_ITERATIONS)
            sigma, self.u[name] = power_iteration(w, self.u[name].to(w), iterations)
            total = total + sigma
        return {**terms, "loss": terms["loss"] + self.coefficient * total,
                "spectral_norm_sum": total.detach().expand_as(terms["loss"])}

    def state_dict(self) -> dict:
        inner = self.objective.state_dict() if callable(getattr(self.objective, "state_dict", None)) else {}
        return {"inner": inner, "u": {k: v.detach().cpu() for k, v in self.u.items()}}

    def load_state_dict(self, state: dict) -> None:
        if callable(getattr(self.objective, "load_state_dict", None)):
            self.objective.load_state_dict(state["inner"])
        self.u = {k: v.clone() for k, v in state["u"].items()}
