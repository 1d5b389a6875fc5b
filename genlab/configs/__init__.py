"""Named presets: Python functions returning overrides, inheriting by calling each other.

Each reproduced result in the README has a preset; `genlab train --preset NAME`
starts from it, and `--set` overrides still apply on top.
"""

from __future__ import annotations

from genlab.config import ConfigError, RunConfig, apply_overrides
from genlab.registry import Registry

PRESETS: Registry = Registry("preset")


def preset(name: str):
    return PRESETS.register(name)


def resolve_train_config(args) -> RunConfig:
    """RunConfig from `genlab train` arguments: preset, then model defaults, then flags, then --set."""
    base: dict[str, str] = {}
    model = args.model
    if args.preset:
        base = dict(PRESETS.get(args.preset)())
        preset_model = base.pop("model")
        if model and model != preset_model:
            raise ConfigError(f"preset {args.preset!r} is for model {preset_model!r}, not {model!r}")
        model = preset_model
    if not model:
        raise ConfigError("name a model (`genlab models` lists them) or give --preset")
    objective = base.pop("objective", None)
    cfg = RunConfig.create(model, objective)
    overrides = [f"{k}={v}" for k, v in base.items()]
    flags = {"data.name": args.data, "train.steps": args.steps, "train.seed": args.seed,
             "train.device": args.device, "train.batch_size": args.batch_size, "data.root": args.data_root}
    overrides += [f"{k}={v}" for k, v in flags.items() if v is not None]
    return apply_overrides(cfg, overrides + list(args.overrides))


from genlab.configs import adversarial, autoregressive, latent  # noqa: E402,F401  (registers the presets)
from genlab.configs import ood  # noqa: E402,F401  (registers the OOD presets)
