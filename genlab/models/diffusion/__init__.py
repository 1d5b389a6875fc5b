"""Diffusion models: iterative denoising from Gaussian noise."""
