"""Objectives: loss_fn(model, batch, phase, step) -> dict of per-example terms."""
