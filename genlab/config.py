"""Typed run configuration with strict ``key=value`` overrides.

A run is described by five sections, each a dataclass:

* ``model``: the model's own ``Config`` (e.g. ``VAE.Config``), plus its name;
* ``objective``: the objective's ``Config``, plus its name;
* ``data``: which dataset, where its files live;
* ``train``: steps, batch, seed, device, checkpointing, EMA...;
* ``optim``: optimizer and learning-rate schedule.

Overrides are strings ``section.field=value`` (``model.latent_dim=2``). A bare
``field=value`` is accepted when exactly one section has that field, so
``--set latent_dim=2`` and ``--set loss=nonsaturating`` work. Unknown keys,
ambiguous keys, values of the wrong type and values outside a ``Literal``
choice are errors that say what would have been valid.

Every numeric field declares the values it allows with ``bounded`` (a ``Range``
in the field's metadata): inf and nan are refused unless the field allows them,
and a value out of range is an error naming the range. The command line checks
its numeric options against the same declarations (``genlab.cli._Checked``), so
one declaration serves a value wherever it enters.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from genlab.errors import UserError
from genlab.registry import MODELS, OBJECTIVES


class ConfigError(UserError, ValueError):
    """A configuration value or key the user gave is not valid."""


MAX_SEED = 2**32 - 1  # seeds are offset by ranks and indices, and other tools take 32-bit seeds


def _show(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


# torch.compile's modes (train.compile_mode).
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]

@dataclass(frozen=True)
class Range:
    """The values a numeric field allows: optional bounds, and whether inf/nan are allowed.

    ``ge``/``gt`` are lower bounds (>=, >), ``le``/``lt`` upper bounds (<=, <). For a
    ``tuple[int, ...]`` field the range applies to every item; for an ``X | None``
    field ``None`` is always allowed (it means "not set").
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = True  # False lets inf (and nan) through, for a field that gives them a meaning
    odd: bool = False  # only odd integers (centred windows such as masked convolution kernels)

    def allows(self, x: float) -> bool:
        if isinstance(x, float) and not math.isfinite(x):
            return not self.finite
        return ((self.ge is None or x >= self.ge) and (self.gt is None or x > self.gt)
                and (self.le is None or x <= self.le) and (self.lt is None or x < self.lt)
                and (not self.odd or x % 2 == 1))

    def describe(self, type_) -> str:
        """'an integer >= 1', 'a number in [0, 1)', 'integers >= 1, comma-separated', '... or none'."""
        base, optional = _strip_optional(type_)
        many = typing.get_origin(base) is tuple
        item = typing.get_args(base)[0] if many else base
        low = f"[{_show(self.ge)}" if self.ge is not None else f"({_show(self.gt)}" if self.gt is not None else ""
        high = f"{_show(self.le)}]" if self.le is not None else f"{_show(self.lt)})" if self.lt is not None else ""
        noun = ("odd " if self.odd else "") + "integer" if item is int else "finite number" if self.finite and not (low and high) else "number"
        text = noun + "s" if many else ("an " if noun[0] in "aeiou" else "a ") + noun
        if low and high:
            text += f" in {low}, {high}"
        elif low:
            text += (" >= " if low[0] == "[" else " > ") + low[1:]
        elif high:
            text += (" <= " if high[-1] == "]" else " < ") + high[:-1]
        if not self.finite:
            text += " (inf allowed)"
        return text + (", comma-separated" if many else "") + (", or none" if optional else "")

    def check(self, key: str, value, type_) -> None:
        """Raise ConfigError naming the allowed values when ``value`` is out of range."""
        if value is None or isinstance(value, bool):
            return
        items = value if isinstance(value, (tuple, list)) else (value,)
        if not all(self.allows(v) for v in items):
            shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
            raise ConfigError(f"{key + '=' if key else ''}{shown} is not allowed: give {self.describe(type_)}")


def bounded(default, *, ge=None, gt=None, le=None, lt=None, finite: bool = True, odd: bool = False):
    """A dataclass field whose values are checked against a declared Range (see ``check_fields``)."""
    return field(default=default, metadata={"range": Range(ge=ge, gt=gt, le=le, lt=lt, finite=finite, odd=odd)})


# The ranges of Python-API arguments that are no config field (sample counts, seeds, a step to stop after).
COUNT = Range(ge=1)
SEED = Range(ge=0, le=MAX_SEED)


def seed_field(default: int = 0):
    """A seed: an integer in [0, MAX_SEED]."""
    return bounded(default, ge=SEED.ge, le=SEED.le)


def declared_range(owner: type, name: str) -> tuple[Range, Any]:
    """(the Range, the type) that dataclass ``owner`` declares for field ``name``."""
    f = {f.name: f for f in dataclasses.fields(owner)}[name]
    if "range" not in f.metadata:
        raise TypeError(f"{owner.__qualname__}.{name} declares no range: use bounded(...)")
    return f.metadata["range"], typing.get_type_hints(owner)[name]


def check_fields(obj, prefix: str = "") -> None:
    """Check every declared range of dataclass ``obj``; errors name the field as ``prefix + name``."""
    hints = _field_types(obj)
    for f in dataclasses.fields(obj):
        if "range" in f.metadata:
            f.metadata["range"].check(prefix + f.name, getattr(obj, f.name), hints[f.name])


def is_numeric(type_) -> bool:
    """Whether a field of this type holds numbers (so it must declare a range); bool is not a number here."""
    base, _ = _strip_optional(type_)
    if typing.get_origin(base) is tuple:
        base = typing.get_args(base)[0]
    return base in (int, float)


def _strip_optional(type_) -> tuple[Any, bool]:
    """(X, True) for ``X | None``, (type_, False) otherwise."""
    if typing.get_origin(type_) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(type_) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(type_))
    return type_, False


@dataclass
class DataConfig:
    name: str = "digits"  # a name from `genlab data list`
    root: str = ""  # dataset folder; "" means $GENLAB_DATA, else ~/.cache/genlab/data
    download: bool = False  # fetch missing official files (needs a network)
    # Reused by `dynamic-binarized-mnist`: the seed of its fixed test-set binarization.
    test_binarization_seed: int = seed_field(0)
    # `folder` dataset only:
    path: str = ""  # folder of images (PNG/JPEG/...), directly inside or one subfolder per class
    # centre-crop to a square, resize to this; 0 keeps the images' own (equal) size
    image_size: int = bounded(0, ge=0)
    image_channels: int = bounded(3, ge=1, le=3)  # 1: grey (ITU-R 601-2 luma), 3: RGB
    test_fraction: float = bounded(0.1, gt=0.0, lt=1.0)  # share of the images held out (seeded) as the test split
    # Two-domain models (cyclegan): domain B's dataset; `name` is domain A. Batches of the two are drawn unpaired.
    domain_b: str = ""
    unpaired_halves: bool = True  # domains made of the same images (mnist, mnist-inverted) train on disjoint halves
    # Audio (`fsdd`) only: every recording is cut to its first clip_samples samples or padded with silence
    clip_samples: int = bounded(4000, ge=16, le=1 << 20)
    # Train on these labels only, e.g. data.classes=3: one model per class, which `genlab classify` combines by
    # Bayes' rule; () keeps every class. The run's test split is filtered alike.
    classes: tuple[int, ...] = bounded((), ge=0)


@dataclass
class TrainConfig:
    steps: int = bounded(2000, ge=0)  # total optimizer steps of the run (a resumed run stops at the same step)
    batch_size: int = bounded(128, ge=1)  # global batch: summed over processes and accumulation micro-steps
    grad_accum: int = bounded(1, ge=1)  # micro-steps per optimizer step
    seed: int = seed_field(0)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast is used on CUDA only
    compile: bool = False  # torch.compile each top-level submodule
    # inductor: generated kernels (the speed-up); eager / aot_eager only trace (graph breaks, tests on a CPU)
    compile_backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    # torch.compile's mode: reduce-overhead (and max-autotune) replay each compiled network as a CUDA graph,
    # one launch for all its kernels, for steps whose time is the host's launching (GPU only; README, GPU suite)
    compile_mode: CompileMode = "default"
    # NHWC memory format for the network's 4-D weights (and so its convolutions): faster for some networks,
    # slower for others (measured per preset with benchmarks/bench_throughput.py; README, "Where the time goes")
    channels_last: bool = False
    # CPU threads of the run's operators; 0: torch's default, one per core (on a machine shared with other
    # jobs, fewer: two threads on two busy cores ran a VAE many times slower than one, see README)
    threads: int = bounded(0, ge=0)
    max_seconds: float = bounded(0.0, ge=0.0)  # stop (checkpointed, resumable) once the steps ran this long; 0: no limit
    ema_decay: float = bounded(0.0, ge=0.0, lt=1.0)  # 0 disables the exponential moving average of weights
    # How the EMA starts (genlab/train/ema.py): "none" decays by ema_decay from the first update, so the
    # random initial weights linger for ~1/(1 - decay) updates; "count" uses min(decay, (1 + n) / (10 + n))
    # at the n-th update; "halflife" caps the half-life of the average at ema_rampup x the images seen
    # (EDM's ramp-up, Karras et al. 2022), reaching ema_decay later.
    ema_warmup: Literal["none", "count", "halflife"] = "none"
    ema_rampup: float = bounded(0.05, gt=0.0, le=1.0)  # "halflife": half-life <= this share of the images seen
    log_every: int = bounded(50, ge=1)  # steps between metric lines (JSONL, TensorBoard)
    ckpt_every: int = bounded(1000, ge=1)  # steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = bounded(2, ge=0)  # N >= 1: keep the newest N, delete older ones; 0: keep all
    max_bad_steps: int = bounded(20, ge=0)  # consecutive non-finite steps before the run stops
    progress: bool = True  # tqdm progress bar on rank 0


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw"] = "adam"
    lr: float = bounded(1e-3, gt=0.0)
    beta1: float = bounded(0.9, ge=0.0, lt=1.0)
    beta2: float = bounded(0.999, ge=0.0, lt=1.0)
    eps: float = bounded(1e-8, gt=0.0)
    weight_decay: float = bounded(0.0, ge=0.0)
    grad_clip: float = bounded(0.0, ge=0.0)  # max global gradient norm; 0 disables clipping
    # Skip an update whose gradient norm (before clipping) exceeds this (VD-VAE's skip_threshold); 0 never skips.
    skip_grad_norm: float = bounded(0.0, ge=0.0)
    # After this many such skips in a row the next update is taken (clipped) instead: a norm that stays
    # above the threshold would otherwise skip every update for ever.
    max_norm_skips: int = bounded(10, ge=0)
    # lambda of lambda * sum sigma(W) over the convolution weights, sigma by power iteration (Miyato et al. 2018;
    # NVAE's spectral regularization); 0 disables it. Logged as train/spectral_norm_sum.
    spectral_reg: float = bounded(0.0, ge=0.0)
    spectral_iterations: int = bounded(1, ge=1)  # power iterations per step for each weight (10 from a cold start)
    warmup_steps: int = bounded(0, ge=0)  # linear warm-up from 0
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    # linear: constant lr for this share of the steps, then linear decay to 0 (CycleGAN: 100 of 200 epochs)
    decay_start: float = bounded(0.5, ge=0.0, le=1.0)
    min_lr_ratio: float = bounded(0.0, ge=0.0, le=1.0)  # cosine schedule ends at lr * min_lr_ratio


SECTIONS = ("model", "objective", "data", "train", "optim")


@dataclass
class RunConfig:
    model_name: str
    objective_name: str
    model: Any  # the model class's Config instance
    objective: Any  # the objective class's Config instance
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @classmethod
    def create(cls, model_name: str, objective_name: str | None = None) -> "RunConfig":
        model_cls = MODELS.get(model_name)
        objective_name = objective_name or model_cls.card.default_objective
        objective_cls = OBJECTIVES.get(objective_name)
        cfg = cls(
            model_name=model_name,
            objective_name=objective_name,
            model=model_cls.Config(),
            objective=objective_cls.Config(),
        )
        # A model may carry its paper's optimizer and training defaults.
        apply_overrides(cfg, [f"{k}={v}" for k, v in model_cls.card.run_defaults.items()])
        return cfg

    def section(self, name: str):
        return getattr(self, name)

    def to_dict(self) -> dict:
        out = {}
        for name in SECTIONS:
            values = dataclasses.asdict(self.section(name))
            if name == "model":
                values = {"name": self.model_name, **values}
            elif name == "objective":
                values = {"name": self.objective_name, **values}
            out[name] = values
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = {k: dict(v) for k, v in d.items()}
        if "channels" in d.get("data", {}):  # run folders written before the field was renamed
            d["data"]["image_channels"] = d["data"].pop("channels")
        cfg = cls.create(d["model"].pop("name"), d["objective"].pop("name"))
        for name in SECTIONS:
            target = cfg.section(name)
            retired = getattr(type(target), "RETIRED", {})  # knobs removed since; their only value is dropped
            for key, value in d.get(name, {}).items():
                if key in retired and value == retired[key]:
                    continue
                _set_field(target, name, key, value)
        return cfg


def _field_types(obj) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _all_keys(cfg: RunConfig) -> dict[str, list[str]]:
    """field name -> sections that have it."""
    keys: dict[str, list[str]] = {}
    for name in SECTIONS:
        for f in dataclasses.fields(cfg.section(name)):
            keys.setdefault(f.name, []).append(name)
    return keys


def parse_value(text: str, type_, key: str):
    """Convert an override string to ``type_``, or raise ConfigError."""
    origin = typing.get_origin(type_)
    if origin is Literal:
        choices = typing.get_args(type_)
        if text not in choices:
            raise ConfigError(f"{key}={text!r} is not one of {', '.join(map(str, choices))}")
        return text
    base, optional = _strip_optional(type_)
    if base is not type_:
        if optional and text.lower() in ("none", "null"):
            return None
        return parse_value(text, base, key)
    if origin is tuple:
        item_types = typing.get_args(type_)
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        if item_types and item_types[-1] is not Ellipsis and len(parts) != len(item_types):
            raise ConfigError(f"{key} takes {len(item_types)} comma-separated values, got {text!r}")
        item_type = item_types[0] if item_types else str
        return tuple(parse_value(p.strip(), item_type, key) for p in parts)
    if type_ is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={text!r} is not a boolean (use true or false)")
    if type_ is int:
        try:
            return int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                as_float = None
            if as_float is not None and as_float.is_integer():
                return int(as_float)
            raise ConfigError(f"{key}={text!r} is not an integer") from None
    if type_ is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r} is not a number") from None
    if type_ is str:
        return text
    raise ConfigError(f"{key} has a type ({type_}) that cannot be set from the command line")


def _coerce(value, type_, key: str):
    """Accept a JSON value for a field: strings are parsed, the rest type-checked."""
    if isinstance(value, str):
        return parse_value(value, type_, key)
    origin = typing.get_origin(type_)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if type_ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is Literal:
        return parse_value(str(value), type_, key)
    if type_ in (int, float, bool) and type(value) is not type_:
        raise ConfigError(f"{key}={value!r} should be of type {type_.__name__}")
    return value


def _set_field(target, section: str, key: str, value) -> None:
    types = _field_types(target)
    if key not in types or key not in {f.name for f in dataclasses.fields(target)}:
        valid = sorted(f.name for f in dataclasses.fields(target))
        close = difflib.get_close_matches(key, valid, n=3)
        hint = f"; did you mean {', '.join(section + '.' + c for c in close)}?" if close else ""
        raise ConfigError(f"unknown key {section}.{key}{hint} (valid: {', '.join(valid)})")
    _assign(target, key, value, types[key], f"{section}.{key}")


def _assign(target, key: str, value, type_, label: str) -> None:
    """Set field ``key`` of dataclass ``target`` from a string or JSON value: typed, then range-checked."""
    value = _coerce(value, type_, label)
    range_ = next(f for f in dataclasses.fields(target) if f.name == key).metadata.get("range")
    if range_ is not None:
        range_.check(label, value, type_)
    setattr(target, key, value)


def override_pairs(overrides) -> list[tuple[str, object]]:
    """``key=value`` strings, a {key: value} dict, or a mix in a list -> (key, value) pairs in order.

    Dict values may be typed (``{"latent_dim": 2, "optim.lr": 1e-3}``); strings are parsed as on the command line.
    """
    items = overrides.items() if isinstance(overrides, dict) else overrides
    pairs = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2:
            pairs.append((str(item[0]), item[1]))
        elif isinstance(item, str) and "=" in item:
            key, text = item.split("=", 1)
            pairs.append((key, text))
        elif isinstance(item, dict):
            pairs += list(item.items())
        else:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=3e-4)")
    return pairs


def apply_overrides(cfg: RunConfig, overrides) -> RunConfig:
    """Apply overrides in order (``key=value`` strings or a {key: value} dict); raise ConfigError on any bad one."""
    all_keys = _all_keys(cfg)
    for key, text in override_pairs(overrides):
        key = key.strip()
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS:
                raise ConfigError(f"unknown section {section!r} in {key!r}; sections are {', '.join(SECTIONS)}")
        else:
            owners = all_keys.get(key, [])
            if not owners:
                every = sorted(f"{s}.{k}" for k, ss in all_keys.items() for s in ss)
                close = difflib.get_close_matches(key, list(all_keys), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"unknown key {key!r}{hint} (valid: {', '.join(every)})")
            if len(owners) > 1:
                raise ConfigError(f"key {key!r} is ambiguous: write one of {', '.join(o + '.' + key for o in owners)}")
            section, name = owners[0], key
        _set_field(cfg.section(section), section, name, text)
    validate(cfg)
    return cfg


def set_options(target, overrides, what: str):
    """Apply ``key=value`` overrides (strings, typed values or a dict) to one options dataclass, strictly.

    Unknown keys and values of the wrong type are ConfigErrors naming ``what`` (e.g. "sampler latent")
    and its options. Returns ``target``.
    """
    types = {f.name: _field_types(target)[f.name] for f in dataclasses.fields(target)}
    for key, value in override_pairs(overrides):
        key = key.strip()
        if key not in types:
            close = difflib.get_close_matches(key, list(types), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{what} has no option {key!r}{hint} (its options: {', '.join(types) or 'none'})")
        _assign(target, key, value, types[key], key)
    return target


def validate(cfg: RunConfig) -> None:
    """Every declared field range of every section, then the checks that relate fields."""
    for name in SECTIONS:
        check_fields(cfg.section(name), name + ".")
    t = cfg.train
    if t.batch_size % t.grad_accum:
        raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by train.grad_accum={t.grad_accum}")
    for section in ("model", "objective"):
        check = getattr(cfg.section(section), "validate", None)
        if check is not None:
            try:
                check()
            except ValueError as err:
                raise ConfigError(f"{section}: {err}") from None
