"""Drawing samples from a trained model in batches, with one generator per sample (`genlab sample`, ``Run.sample``)."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import torch

from genlab.card import SamplerSpec, conditioning
from genlab.config import COUNT, SEED, Range, set_options
from genlab.errors import InputError
from genlab.nn.labels import class_labels
from genlab.registry import SAMPLER_OPTIONS, SAMPLERS
from genlab.rng import make_generators


def sampler_of(model, name: str | None = None):
    """The sampler function named ``name`` on the model's card (default: the card's first)."""
    return SAMPLERS.get(_spec(model, name).name)


def _spec(model, name: str | None) -> SamplerSpec:
    if not model.card.samplers:
        raise InputError(f"{type(model).__name__} has no prior to sample from (an autoencoder reconstructs and "
                         "interpolates only); train a vae to sample")
    return model.card.sampler(name)


def sampler_options(model, name: str | None = None, overrides=()):
    """The typed options of a model's sampler: the dataclass defaults, then the card's, then ``overrides``.

    Args:
        name: a sampler on the model's card (None: its first).
        overrides: ``key=value`` strings, (key, value) pairs or a dict; unknown keys and bad
            values are ConfigErrors listing the sampler's options.
    Returns:
        an instance of the sampler's options dataclass (``SAMPLER_OPTIONS``).
    """
    spec = _spec(model, name)
    options = SAMPLER_OPTIONS.get(spec.name)()
    set_options(options, dict(spec.defaults), f"sampler {spec.name}")
    return set_options(options, overrides, f"sampler {spec.name}")


def option_fields(options) -> list[dict]:
    """Each field of a sampler's options dataclass (or of an instance, whose values become the defaults).

    Returns:
        one dict per field: name, default, kind (its type or range in words), choices (a Literal's values, else
        ()), help (the comment after the field in the source); `genlab sample --help` and `genlab app` show these.
    """
    cls = options if isinstance(options, type) else type(options)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else ()
        kind_text = ("|".join(map(str, choices)) if choices else f.metadata["range"].describe(kind)
                     if "range" in f.metadata else kind.__name__)
        default = f.default if isinstance(options, type) else getattr(options, f.name)
        out.append({"name": f.name, "default": default, "kind": kind_text, "choices": choices,
                    "help": _comment(cls, f.name).removeprefix(": ")})
    return out


def describe_sampler_options() -> list[str]:
    """One line per registered sampler and option (name, type, default, comment), for `genlab sample --help`."""
    lines = []
    for name, options in SAMPLER_OPTIONS.items():
        fields = option_fields(options)
        lines.append(f"  {name}:" + ("" if fields else " (no options)"))
        for f in fields:
            lines.append(f"    {f['name']}={f['default']} ({f['kind']})" + (f": {f['help']}" if f["help"] else ""))
    return lines


def _comment(options: type, field_name: str) -> str:
    """The comment after the field in the dataclass source: its one-line help."""
    try:
        source = inspect.getsource(options)
    except (OSError, TypeError):  # no source shipped (a frozen install): help without comments
        return ""
    for line in source.splitlines():
        head, _, comment = line.partition("#")
        if head.strip().startswith(field_name + ":") and comment:
            return ": " + comment.strip()
    return ""


def describe_sampling(model, name: str | None = None, options=None) -> str:
    """'sampler ddim (steps=50, eta=0.0, ...), NFE 50': what a sample set was drawn with, for notes and logs.

    Diffusion samplers state their network evaluations (NFE), since quality and cost both follow them.
    """
    spec = _spec(model, name)
    if options is None and spec.name not in SAMPLER_OPTIONS:  # a sampler registered without options
        return f"sampler {spec.name}"
    options = sampler_options(model, name) if options is None else options
    values = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(options).items())
    text = f"sampler {spec.name}" + (f" ({values})" if values else "")
    if model.card.family == "diffusion":
        from genlab.sampling.diffusion import nfe

        text += f", NFE {nfe(spec.name, options, model)}"
    return text


@torch.no_grad()
def draw(model, n: int, seed: int, device, batch_size: int = 256, label: int | None = None, start: int = 0,
         sampler: str | None = None, source: torch.Tensor | None = None, **opts) -> torch.Tensor:
    """Samples ``start .. start + n - 1`` of the stream seeded ``seed``, in batches; (n, C, H, W) on CPU.

    ``sampler`` picks one of the card's samplers (default: its first); ``opts`` are that sampler's
    options (typed values or strings), checked against its options dataclass. ``source`` (n, C, H, W)
    in [0, 1] are the images an image-to-image model translates (its card's ``conditioning.source_image``).
    """
    for key, value, range_ in (("n", n, COUNT), ("batch_size", batch_size, COUNT), ("seed", seed, SEED),
                               ("start", start, Range(ge=0))):
        range_.check(key, value, int)
    sample_fn = sampler_of(model, sampler)
    options = dataclasses.asdict(sampler_options(model, sampler, opts))
    # Checked once for the whole request, before any batch is drawn (each sampler checks its batch again).
    class_labels(label, n, conditioning(model).num_classes, who=type(model).__name__)
    out = []
    for first in range(start, start + n, batch_size):
        count = min(batch_size, start + n - first)
        gens = make_generators(seed, count, device, start=first)
        extra = {} if source is None else {"source": source[first - start:first - start + count]}
        out.append(sample_fn(model, count, gens, device, label=label, **extra, **options).float().cpu())
    return torch.cat(out)
