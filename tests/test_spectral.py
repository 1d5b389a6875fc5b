"""Spectral regularization (optim.spectral_reg): the power-iteration estimate against the exact spectral norm,
its gradient, the objective wrapper (training steps only), and exact resume with its vectors in the checkpoint."""

from __future__ import annotations

import json

import torch
from torch import nn

from genlab.cli import main
from genlab.nn.spectral import as_matrix, conv_weights, initial_vector, power_iteration
from genlab.nn.spec import Phase
from genlab.objectives.regularizers import SpectralRegularized
from genlab.train.checkpoint import load_latest
from genlab.train.run import load_run


def test_power_iteration_matches_the_exact_spectral_norm_and_its_gradient():
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    u = initial_vector(w.detach(), torch.Generator().manual_seed(1))
    sigma, u = power_iteration(w, u, iterations=200)
    exact = torch.linalg.matrix_norm(as_matrix(w), ord=2)
    torch.testing.assert_close(sigma, exact, rtol=1e-10, atol=0)
    ours, = torch.autograd.grad(sigma, w)
    reference, = torch.autograd.grad(exact, w)  # u1 v1^T of the top singular pair
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-8)
    warm, _ = power_iteration(w, u, iterations=1)  # a converged u stays converged
    torch.testing.assert_close(warm, exact, rtol=1e-10, atol=0)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.head = nn.Linear(2, 2)  # not a convolution: not regularized

    def phases(self):
        return [Phase("main")]


def _objective(model, batch, phase, step):
    return {"loss": model.conv(batch["x"]).flatten(1).sum(1)}


def test_the_wrapper_adds_lambda_sigma_on_training_steps_only():
    torch.manual_seed(0)
    net = _Net()
    assert list(conv_weights(net)) == ["conv.weight"]
    reg = SpectralRegularized(_objective, coefficient=0.5, iterations=1)
    batch = {"x": torch.randn(2, 1, 4, 4)}
    net.eval()
    with torch.no_grad():
        assert torch.equal(reg(net, batch, "main", 0)["loss"], _objective(net, batch, "main", 0)["loss"])
    assert reg.u == {}  # an evaluation pass starts and moves no power iteration
    net.train()
    terms = reg(net, batch, "main", 0)
    sigma = torch.linalg.matrix_norm(as_matrix(net.conv.weight.detach()), ord=2)
    torch.testing.assert_close(terms["spectral_norm_sum"], sigma.expand(2), rtol=1e-3, atol=0)  # 10 cold iterations
    torch.testing.assert_close(terms["loss"], _objective(net, batch, "main", 0)["loss"] + 0.5 * terms["spectral_norm_sum"])
    state = reg.state_dict()
    twin = SpectralRegularized(_objective, 0.5)
    twin.load_state_dict(state)
    assert torch.equal(twin.u["conv.weight"], reg.u["conv.weight"])


def test_a_regularized_run_logs_the_term_and_checkpoints_its_vectors(tmp_path):
    """The vectors u are the objective's state in the checkpoint, so a resumed run continues the same iteration."""
    run = tmp_path / "run"
    assert main(["train", "vae", "--data", "digits", "--batch-size", "16", "--device", "cpu", "--steps", "2",
                 "--set", "model.channels=8,16", "--set", "model.hidden=32", "--set", "latent_dim=2",
                 "--set", "optim.spectral_reg=0.1", "--set", "train.progress=false", "--set", "train.log_every=1",
                 "--out", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["train/spectral_norm_sum"] > 0 for r in rows)
    ckpt = load_latest(run)
    stored = {k for k in ckpt["objective"] if "/u/" in k}
    assert stored and len(stored) == len(conv_weights(load_run(run).model))
