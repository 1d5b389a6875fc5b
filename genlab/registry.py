"""Name -> object registries, filled by decorators at import time.

Every pluggable piece of genlab (models, objectives, samplers, evaluators,
datasets, metrics) is looked up by a string name in one of these dicts. A
module registers itself with ``@MODELS.register("vae")``. The first lookup in
any registry imports ``PLUGIN_MODULES`` (which import every family), so the
registries are full whenever they are read, while ``import genlab`` itself
stays fast. Unknown names give an error listing what exists.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

# The one list of what registers something. Imported by name on the first lookup, not at import time, so that
# `import genlab` loads neither torch nor the families; this is the only place a low layer names higher ones.
PLUGIN_MODULES = (
    "genlab.data", "genlab.models", "genlab.objectives", "genlab.sampling", "genlab.eval",
    "genlab.eval.latent", "genlab.eval.adversarial", "genlab.eval.sample_metrics", "genlab.eval.memorization",
    "genlab.eval.exact", "genlab.reports", "genlab.reports.figures", "genlab.ood",
)
_loaded = False


def load_plugins() -> None:
    """Import every registering module once (a nested lookup during that import sees what exists so far)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    try:
        for name in PLUGIN_MODULES:
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
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

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
EVALUATORS: Registry[Callable] = Registry("evaluator")
DATASETS: Registry[Callable] = Registry("dataset")
METRICS: Registry[Callable] = Registry("metric")
# Report figures per model family: fn(loaded_run, out_dir, device) -> list of (title, file name).
FIGURE_SETS: Registry[Callable] = Registry("figure set")
