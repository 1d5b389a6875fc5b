from genlab.sampling import latent  # noqa: F401
from genlab.sampling import adversarial  # noqa: F401
from genlab.sampling import autoregressive  # noqa: F401
