"""Implicit generative models trained as two-player games: dcgan, cgan, bigan."""
