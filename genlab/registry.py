"""Name -> object registries, filled by decorators at import time.

Every pluggable piece of genlab (models, objectives, samplers, evaluators,
datasets, metrics) is looked up by a string name in one of these dicts. A
module registers itself with ``@MODELS.register("vae")``. The first lookup in
any registry imports every module of ``PLUGIN_PACKAGES`` (found by pkgutil), so the
registries are full whenever they are read, while ``import genlab`` itself
stays fast. Unknown names give an error listing what exists.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterator, TypeVar

from genlab.errors import InputError, UnknownName

T = TypeVar("T")

# The packages whose modules register something. Every module under them is imported (found by
# pkgutil, not listed by hand) on the first lookup, not at import time, so that `import genlab` loads
# neither torch nor the families; a new model, sampler or evaluator file registers itself by being there.
# This is the only place a low layer names higher ones.
PLUGIN_PACKAGES = ("genlab.data", "genlab.models", "genlab.objectives", "genlab.sampling", "genlab.eval",
                   "genlab.reports", "genlab.ood")
_loaded = False


def plugin_modules() -> list[str]:
    """Every module of ``PLUGIN_PACKAGES`` (and subpackages), packages first, in a fixed order."""
    names = []
    for package in PLUGIN_PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        names += sorted(m.name for m in pkgutil.walk_packages(path, package + "."))
    return names


def load_plugins() -> None:
    """Import every registering module once (a nested lookup during that import sees what exists so far)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    try:
        for name in plugin_modules():
            importlib.import_module(name)
    except BaseException:
        _loaded = False  # a failed import must not leave the registries silently half full
        raise


class Registry(Generic[T]):
    """A named dict with a registering decorator and helpful lookup errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise InputError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownName(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        load_plugins()
        return iter(sorted(self._entries))

    def items(self):
        load_plugins()
        return sorted(self._entries.items())

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)


MODELS: Registry[type] = Registry("model")
OBJECTIVES: Registry[type] = Registry("objective")
SAMPLERS: Registry[Callable] = Registry("sampler")
# The typed options of each sampler (a dataclass; its fields are the sampler's keyword options and
# what `genlab sample --sampler NAME --set key=value` accepts), registered with it by register_sampler.
SAMPLER_OPTIONS: Registry[type] = Registry("sampler options")
EVALUATORS: Registry[Callable] = Registry("evaluator")
DATASETS: Registry[Callable] = Registry("dataset")
METRICS: Registry[Callable] = Registry("metric")
# Feature extractors of the probes, by the card's FeatureSpec.kind: fn(model, spec, x, generators) -> (B, D).
FEATURES: Registry[Callable] = Registry("feature extractor")
# Report figures per model family: fn(loaded_run, out_dir, device) -> list of (title, file name).
FIGURE_SETS: Registry[Callable] = Registry("figure set")


def register_sampler(name: str, options: type) -> Callable[[Callable], Callable]:
    """Register a sampler function and its options dataclass under one name."""

    def decorator(fn: Callable) -> Callable:
        SAMPLER_OPTIONS.register(name)(options)
        return SAMPLERS.register(name)(fn)

    return decorator
