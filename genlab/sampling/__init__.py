"""Samplers: pure functions (model, n, generators, device, label, **options) -> images."""
