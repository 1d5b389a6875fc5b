"""Autoregressive models: exact likelihoods by the chain rule over sub-pixels."""

from genlab.models.autoregressive import gated_pixelcnn, pixel_transformer, pixelcnn  # noqa: F401  (registers)
