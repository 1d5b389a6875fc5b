"""Every model module, imported so that its @MODELS.register runs."""

from genlab.models.latent import autoencoder, vae  # noqa: F401
from genlab.models.adversarial import bigan, cgan, dcgan  # noqa: F401
from genlab.models import autoregressive  # noqa: F401  (pixelcnn, gated-pixelcnn, pixel-transformer)
