"""Autoregressive models: exact likelihoods by the chain rule over sub-pixels."""
