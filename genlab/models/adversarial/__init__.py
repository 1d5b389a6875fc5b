"""Implicit generative models trained as two-player games: dcgan, cgan, bigan.

Importing this package registers the three models in ``genlab.registry.MODELS``.
"""

from genlab.models.adversarial import bigan, cgan, dcgan  # noqa: F401  (registration)
