"""Name -> object registries, filled by decorators at import time.

Every pluggable piece of genlab (models, objectives, samplers, evaluators,
datasets, metrics) is looked up by a string name in one of these dicts. A
module registers itself with ``@MODELS.register("vae")``; ``genlab.models``
imports every model module so that the registries are full once ``genlab`` is
imported. Unknown names give an error listing what exists.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


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
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self):
        return sorted(self._entries.items())

    def names(self) -> list[str]:
        return sorted(self._entries)


MODELS: Registry[type] = Registry("model")
OBJECTIVES: Registry[type] = Registry("objective")
SAMPLERS: Registry[Callable] = Registry("sampler")
EVALUATORS: Registry[Callable] = Registry("evaluator")
DATASETS: Registry[Callable] = Registry("dataset")
METRICS: Registry[Callable] = Registry("metric")
# Report figures per model family: fn(loaded_run, out_dir, device) -> list of (title, file name).
FIGURE_SETS: Registry[Callable] = Registry("figure set")
