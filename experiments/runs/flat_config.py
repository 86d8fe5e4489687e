"""A run's config as flat ``key: value`` pairs a person can read: for the HPARAMS dashboard and ``runs``.

``model.init_args.optimizer.init_args.lr`` becomes ``model.optimizer.lr`` and a ``class_path`` becomes
the value of its parent key (``model.optimizer: torch.optim.SGD``). Values are numbers, booleans or
text (lists and mappings as JSON text, None as "None"), which is what TensorBoard's hparams accept.
"""

from __future__ import annotations

import json
from typing import Any

#: keys that describe how a run was launched, not what it is (left out)
LEFT_OUT = ("config", "ckpt_path", "subcommand", "trainer.callbacks", "trainer.logger", "trainer.plugins",
            "trainer.profiler", "trainer.default_root_dir", "return_predictions")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{dotted.key: value}``, ``init_args`` levels left out (the keys a user types)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key == "init_args":
            flat.update(flatten(value or {}, prefix))
            continue
        if key == "class_path":
            flat[prefix.rstrip(".") or "class_path"] = str(value)
            continue
        name = f"{prefix}{key}"
        if name in LEFT_OUT:
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif value is None and name.startswith("trainer."):
            continue  # Lightning's default, left unset: dozens of them would bury the options that were set
        else:
            flat[name] = plain(value)
    return flat


def plain(value: Any) -> Any:
    """A config value as a number, string or bool a table or a tracker can show."""
    if value is None:
        return "None"
    if isinstance(value, (bool, int, float, str)):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def run_params(experiment: str, version: int | None, monitor: str, config: dict[str, Any],
               extra: dict[str, Any] | None = None) -> dict[str, bool | int | float | str]:
    """What a run's hyperparameters show on every tracker (TensorBoard's HPARAMS, MLflow's params): who the run
    is, the metric it monitors, the flattened config and extra fields such as a sweep's study and trial.
    """
    params = {"experiment": experiment, "version": version, "monitor": monitor, **config, **(extra or {})}
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}
