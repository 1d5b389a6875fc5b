"""genlab: train, sample, evaluate and compare deep generative models of images.

    import genlab
    run = genlab.load("runs/x")                                   # a run folder or an exported folder
    run = genlab.train("vae", data="mnist", steps=1000, out="runs/x", latent_dim=2)

`import genlab` loads neither torch nor any family: the API (genlab/api.py) is imported on the first
use of ``genlab.load`` / ``genlab.train``, and the registries fill themselves on their first lookup.
"""

__version__ = "0.1.0"

import types as _types

import genlab.train as _train_package  # an empty package __init__: cheap

_API_NAMES = ("load", "Run", "NLL", "CapabilityError", "capabilities")


class _CallableTrainPackage(_types.ModuleType):
    """``genlab.train`` is the training package (``genlab.train.loop``...) and, when called, the Python API's
    ``genlab.api.train``: a plain function of that name would be replaced by the package as soon as any
    ``genlab.train.*`` module is first imported."""

    def __call__(self, *args, **kwargs):
        from genlab.api import train  # imported on use: keeps `import genlab` free of torch

        return train(*args, **kwargs)


_train_package.__class__ = _CallableTrainPackage


def __getattr__(name: str):
    # PEP 562: genlab.load and friends import the API (and torch) on first use.
    if name in _API_NAMES:
        from genlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API_NAMES) + ["train"])
