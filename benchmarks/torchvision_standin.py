"""An empty stand-in for torchvision, for importing peers whose code on the benchmarked path never calls it.

torch-fidelity and denoising-diffusion-pytorch import torchvision at import time (datasets, transforms,
feature extractors), but their metrics from feature arrays, U-Net, diffusion loss and samplers use torch and
numpy only. torchvision does not import beside the local CPU build of torch here (its wheels pin another
torch), so the peer benchmarks put this stand-in in its place: every torchvision module is an empty module
whose attributes are empty classes. Anything that really used torchvision would fail loudly, not silently.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types


class _StandIn(types.ModuleType):
    """An empty module whose every attribute is an empty class: enough for `from torchvision.x import Y`."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves _StandIn modules for torchvision and its submodules."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def import_peer(package: str, modules: list[str], install: str) -> tuple[list[types.ModuleType], str]:
    """Import ``modules`` of the peer ``package``, with the real torchvision where it imports, else with the
    stand-in. Returns (the modules, how torchvision was provided, in words).

    Raises:
        SystemExit: the peer is not installed (``install`` says how to install it).
    """
    if importlib.util.find_spec(package) is None:
        raise SystemExit(f"{package} is not installed: {install}")
    try:
        return [importlib.import_module(m) for m in modules], "torchvision imported"
    except Exception as err:  # noqa: BLE001 - ImportError, or torchvision's RuntimeError against another torch
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:120]
    for name in [n for n in sys.modules if n.split(".")[0] in ("torchvision", package)]:
        del sys.modules[name]  # the half-imported modules of the failed attempt
    sys.meta_path.insert(0, _StandInFinder())
    return ([importlib.import_module(m) for m in modules],
            f"torchvision replaced by an empty stand-in module ({reason})")
