from genlab.objectives import latent  # noqa: F401
from genlab.objectives import adversarial  # noqa: F401
from genlab.objectives import autoregressive  # noqa: F401
