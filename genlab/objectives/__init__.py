from genlab.objectives import latent  # noqa: F401
