from genlab.sampling import latent  # noqa: F401
