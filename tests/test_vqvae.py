"""VQ-VAE: straight-through gradients, the EMA codebook update and the dead-code reset on hand-made cases."""

from __future__ import annotations

import math

import torch

from genlab.models.latent.vqvae import VQVAE
from genlab.nn.spec import DataSpec
from genlab.nn.vq import CodebookState, codebook_usage, ema_update, nearest_codes, reset_dead_codes, straight_through
from genlab.objectives.vq import VQ


def test_straight_through_passes_the_code_value_forward_and_the_gradient_unchanged_backward():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    z_e = torch.tensor([[0.2, 0.1], [0.9, 1.2], [0.6, 0.7]], requires_grad=True)
    codes = nearest_codes(z_e.detach(), codebook)
    assert codes.tolist() == [0, 1, 1]
    out = straight_through(z_e, codebook[codes])
    assert torch.equal(out.detach(), codebook[[0, 1, 1]])
    w = torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]])
    (w * out).sum().backward()
    assert torch.equal(z_e.grad, w)  # d out / d z_e is the identity


def test_model_gradient_reaches_the_encoder_through_the_quantizer():
    torch.manual_seed(0)
    model = VQVAE(VQVAE.Config(channels=(4,), blocks=0, code_dim=2, codebook_size=4), DataSpec(1, 4, 4, bits=1))
    out = model(torch.rand(2, 1, 4, 4).round())
    out["raw"].sum().backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.quantizer.codebook.grad is None  # a buffer: learned by the EMA, not by gradient


def test_ema_update_by_hand():
    state = CodebookState(torch.tensor([[0.0], [10.0]]), torch.tensor([1.0, 1.0]), torch.tensor([[0.0], [10.0]]))
    z = torch.tensor([[1.0], [3.0], [9.0]])
    codes = nearest_codes(z, state.codebook)
    assert codes.tolist() == [0, 0, 1]
    new = ema_update(state, z, codes, decay=0.5, eps=0.0)
    # N = 0.5 * [1, 1] + 0.5 * [2, 1] = [1.5, 1]; m = 0.5 * [0, 10] + 0.5 * [1 + 3, 9] = [2, 9.5]
    torch.testing.assert_close(new.count, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(new.total, torch.tensor([[2.0], [9.5]]))
    torch.testing.assert_close(new.codebook, torch.tensor([[2.0 / 1.5], [9.5]]))
    # Laplace smoothing: N~_k = (N_k + eps) / (N + K eps) * N, N = 2.5.
    eps = 0.1
    smoothed = (torch.tensor([1.5, 1.0]) + eps) / (2.5 + 2 * eps) * 2.5
    torch.testing.assert_close(ema_update(state, z, codes, 0.5, eps).codebook,
                               torch.tensor([[2.0], [9.5]]) / smoothed[:, None])
    # decay 1 keeps everything; decay 0 gives the batch means of the codes used.
    assert torch.equal(ema_update(state, z, codes, 1.0, 0.0).codebook, state.codebook)
    torch.testing.assert_close(ema_update(state, z, codes, 0.0, 0.0).codebook, torch.tensor([[2.0], [9.0]]))


def test_dead_codes_move_onto_encoder_outputs():
    state = CodebookState(torch.tensor([[0.0], [5.0], [10.0]]), torch.tensor([2.0, 1e-4, 3.0]),
                          torch.tensor([[0.0], [5e-4], [30.0]]))
    z = torch.tensor([[7.0], [7.0]])
    new, n = reset_dead_codes(state, z, threshold=1e-2)
    assert n == 1
    assert new.codebook.tolist() == [[0.0], [7.0], [10.0]] and new.count.tolist() == [2.0, 1.0, 3.0]
    assert torch.equal(new.total[1], new.codebook[1])  # restarts as one assignment at its new place
    assert reset_dead_codes(state, z, threshold=0.0)[1] == 0


def test_codebook_usage_and_perplexity():
    usage, perplexity = codebook_usage(torch.tensor([0, 0, 1, 1]), 4)
    assert usage == 0.5 and math.isclose(perplexity, 2.0)
    assert math.isclose(codebook_usage(torch.arange(8), 8)[1], 8.0)


def test_training_step_moves_the_codebook_and_logs_its_usage_but_an_eval_pass_does_not():
    torch.manual_seed(0)
    spec = DataSpec(1, 4, 4, bits=1)
    model = VQVAE(VQVAE.Config(channels=(4,), blocks=0, code_dim=2, codebook_size=4), spec)
    objective = VQ(VQ.Config(), spec)
    x = torch.rand(3, 1, 4, 4).round()
    before = model.quantizer.codebook.clone()
    model.eval()
    with torch.no_grad():
        objective(model, {"x": x}, "main", 0)
    assert torch.equal(model.quantizer.codebook, before)
    model.train()
    terms = objective(model, {"x": x}, "main", 0)
    assert not torch.equal(model.quantizer.codebook, before)
    assert 0 < terms["codebook_usage"][0] <= 1 and 1 <= terms["perplexity"][0] <= 4
