"""Toy 1-D and 2-D data with known densities, and GAN theory checked on it.

* ``mixtures``: isotropic Gaussian mixtures (the 8-Gaussian ring and friends),
  with exact log-densities and seeded sampling.
* ``theory``: the optimal discriminator D* = p_data / (p_data + p_g), the
  Jensen-Shannon divergence and the value of the game by numerical integration
  on a grid (Goodfellow et al. 2014, Proposition 1 and Theorem 1).
* ``nets``: small MLP generators and discriminators that speak the same model
  protocol as the image GANs, so the ``gan`` objective trains them unchanged.
* ``fit``: a minimal in-memory phase loop with the trainer's contract.
* ``experiments``: the optimality, saturation and mode-coverage experiments
  used by tests/test_gan_toy.py and benchmarks/gan_toy_theory.py.
"""
