"""Named presets: Python functions returning overrides, inheriting by calling each other.

Each reproduced result in the README has a preset; `genlab train --preset NAME`
starts from it, and `--set` overrides still apply on top.
"""

from __future__ import annotations

from genlab.config import ConfigError, RunConfig, apply_overrides, override_pairs
from genlab.registry import Registry

PRESETS: Registry = Registry("preset")


def preset(name: str):
    return PRESETS.register(name)


def resolve_train_config(model: str | None = None, *, preset: str | None = None, data: str | None = None,
                         steps: int | None = None, seed: int | None = None, device: str | None = None,
                         batch_size: int | None = None, data_root: str | None = None, overrides=()) -> RunConfig:
    """The RunConfig of a new run: preset, then model defaults, then the named arguments, then ``overrides``.

    Used by `genlab train` and by ``genlab.train`` alike.

    Args:
        model: a registered model name; optional when ``preset`` names one.
        preset: a name from ``PRESETS`` (`genlab models --presets`).
        data, steps, seed, device, batch_size, data_root: shortcuts for data.name, train.steps, train.seed,
            train.device, train.batch_size and data.root; None keeps the preset's or the default.
        overrides: ``key=value`` strings and/or a {key: value} dict (see ``config.apply_overrides``).
    Raises:
        ConfigError: no model, a preset of another model, or a bad override.
    """
    base: dict[str, str] = {}
    if preset:
        base = dict(PRESETS.get(preset)())
        preset_model = base.pop("model")
        if model and model != preset_model:
            raise ConfigError(f"preset {preset!r} is for model {preset_model!r}, not {model!r}")
        model = preset_model
    if not model:
        raise ConfigError("name a model (`genlab models` lists them) or give a preset")
    objective = base.pop("objective", None)
    cfg = RunConfig.create(model, objective)
    flags = {"data.name": data, "train.steps": steps, "train.seed": seed,
             "train.device": device, "train.batch_size": batch_size, "data.root": data_root}
    # Preset values go through the command-line parser, as they always have (a preset may write 2e4 steps).
    pairs = [(k, str(v)) for k, v in base.items()] + [(k, v) for k, v in flags.items() if v is not None]
    return apply_overrides(cfg, pairs + override_pairs(overrides))


from genlab.configs import adversarial, autoregressive, latent  # noqa: E402,F401  (registers the presets)
from genlab.configs import ood  # noqa: E402,F401  (registers the OOD presets)
from genlab.configs import diffusion  # noqa: E402,F401  (registers the diffusion presets)
