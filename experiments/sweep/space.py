"""A sweep file: the search space by the CLI's own option names, the number of trials, sampler and pruner.

```yaml
n_trials: 20
sampler: {name: tpe, seed: 137}          # tpe (default) | random | grid
pruner: {name: median, n_warmup_steps: 2} # none (default) | median | hyperband | threshold
parameters:
  model.init_args.optimizer.init_args.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  data.init_args.batch_size: {type: int, low: 32, high: 256, step: 32}
  model.init_args.net.init_args.widths: {type: categorical, choices: [[64, 64], [128, 128]]}
enqueue:                                 # optional: trials to run first (e.g. the current defaults)
  - {model.init_args.optimizer.init_args.lr: 0.005}
```

Everything here is checked when the file is read, in one line per mistake naming the key; the
option names themselves are checked against the experiment's parser by :mod:`experiments.sweep`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband", "threshold")
TYPES = ("float", "int", "categorical")


@dataclass
class Parameter:
    """One option of the search space. Categorical choices that Optuna cannot store (lists, mappings)
    are kept as their JSON text, which is also how they are passed to the CLI.
    """

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list[Any] = field(default_factory=list)

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for ``trial``, drawn by Optuna."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.name, self.choices)

    def holds(self, value: Any) -> bool:
        """Whether ``value`` lies in this parameter's range (or is one of its choices)."""
        if self.type == "categorical":
            return value in self.choices
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def samples(self) -> list[Any]:
        """Values that cover the range's ends (or every choice), for checking against the parser."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


def storable(value: Any) -> Any:
    """A categorical choice as Optuna can store it: lists and mappings become JSON text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def as_cli_value(value: Any) -> str:
    """A sampled value as a command-line token (jsonargparse reads JSON/YAML text for lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if not isinstance(value, (list, dict)) else json.dumps(value)


@dataclass
class SweepFile:
    """A sweep file read and checked: the search space, the trial count, the sampler and the pruner."""
    path: Path
    parameters: list[Parameter]
    n_trials: int
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    enqueue: list[dict[str, Any]]


def _fail(path: Path, key: str, why: str) -> ValueError:
    return ValueError(f"--sweep {path}: {key}: {why}")


def _number(path: Path, key: str, spec: dict, name: str, integer: bool) -> float | int:
    value = spec.get(name)
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
        kind = "an integer" if integer else "a number"
        raise _fail(path, key, f"'{name}' must be {kind}, got {value!r}")
    return value


def _parameter(path: Path, key: str, spec: Any) -> Parameter:
    if not isinstance(spec, dict):
        raise _fail(path, key, "give a mapping like {type: float, low: 0.001, high: 0.1}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise _fail(path, key, f"type must be one of {', '.join(TYPES)}, got {kind!r}")
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices"}
    if unknown:
        raise _fail(path, key, f"unknown field(s) {', '.join(sorted(unknown))}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(path, key, "categorical needs a non-empty list of choices")
        stored = [storable(c) for c in choices]
        if len(set(map(repr, stored))) != len(stored):
            raise _fail(path, key, "choices repeat a value")
        return Parameter(key, kind, choices=stored)
    integer = kind == "int"
    low, high = _number(path, key, spec, "low", integer), _number(path, key, spec, "high", integer)
    log = bool(spec.get("log", False))
    step = spec.get("step")
    if not low < high:
        raise _fail(path, key, f"empty or inverted range: low {low} must be below high {high}")
    if log and low <= 0:
        raise _fail(path, key, f"a log range needs low > 0, got {low}")
    if step is not None:
        step = _number(path, key, spec, "step", integer)
        if step <= 0 or log:
            raise _fail(path, key, "step must be > 0 and cannot be combined with log")
    return Parameter(key, kind, low=low, high=high, log=log, step=step)


def _named(path: Path, key: str, spec: Any, names: tuple[str, ...], default: str) -> dict[str, Any]:
    spec = {"name": spec} if isinstance(spec, str) else dict(spec or {"name": default})
    spec.setdefault("name", default)
    if spec["name"] not in names:
        raise _fail(path, key, f"unknown {key} {spec['name']!r}; use one of {', '.join(names)}")
    return spec


def read(path: str | Path) -> SweepFile:
    """A sweep file, checked.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: the file is not a valid sweep (one line naming the key and the fix).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--sweep {path}: no such file; pass a sweep file such as "
                                "experiments/sweeps/sin_mlp.yaml") from None
    except yaml.YAMLError as err:
        raise ValueError(f"--sweep {path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"--sweep {path}: expected a mapping with 'parameters' (and n_trials, sampler, pruner)")
    unknown = set(raw) - {"parameters", "n_trials", "sampler", "pruner", "enqueue"}
    if unknown:
        raise ValueError(f"--sweep {path}: unknown key(s) {', '.join(sorted(unknown))}; "
                         "use parameters, n_trials, sampler, pruner, enqueue")
    spaces = raw.get("parameters")
    if not isinstance(spaces, dict) or not spaces:
        raise ValueError(f"--sweep {path}: 'parameters' must map CLI option names to ranges, e.g. "
                         "model.init_args.optimizer.init_args.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}")
    parameters = [_parameter(path, str(k), v) for k, v in spaces.items()]
    n_trials = raw.get("n_trials", 10)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise _fail(path, "n_trials", f"must be an integer >= 1, got {n_trials!r}")
    sampler = _named(path, "sampler", raw.get("sampler"), SAMPLERS, "tpe")
    pruner = _named(path, "pruner", raw.get("pruner"), PRUNERS, "none")
    if sampler["name"] == "grid" and any(p.type != "categorical" for p in parameters):
        raise _fail(path, "sampler", "grid needs every parameter to be categorical")
    enqueue = raw.get("enqueue") or []
    names = {p.name for p in parameters}
    if not isinstance(enqueue, list) or not all(isinstance(e, dict) and set(e) <= names for e in enqueue):
        raise _fail(path, "enqueue", "must be a list of mappings whose keys are parameters of this file")
    enqueue = [{k: storable(v) for k, v in e.items()} for e in enqueue]
    by_name = {p.name: p for p in parameters}
    for entry in enqueue:
        for name, value in entry.items():
            if not by_name[name].holds(value):
                raise _fail(path, "enqueue", f"{name} = {value!r} is outside its range or choices")
    return SweepFile(path, parameters, n_trials, sampler, pruner, enqueue)


def make_sampler(spec: dict[str, Any], parameters: list[Parameter]) -> Any:
    """The Optuna sampler the sweep file names, seeded per trial."""
    import optuna

    from experiments.sweep.trial_seeds import SeedPerTrial

    options = {k: v for k, v in spec.items() if k != "name"}
    grid = {p.name: p.choices for p in parameters}
    builders = {"random": optuna.samplers.RandomSampler,
                "grid": lambda **kwargs: optuna.samplers.GridSampler(grid, **kwargs),
                "tpe": optuna.samplers.TPESampler}
    make = builders[spec["name"]]
    if spec["name"] == "tpe":  # constant_liar: running trials count as likely results, so parallel workers spread out
        options = {"seed": 137, "constant_liar": True, **options}
    try:
        sampler = make(**options)
    except TypeError as err:
        raise ValueError(f"sampler {spec['name']}: {err}") from None
    seed = options.pop("seed", None)
    return sampler if seed is None else SeedPerTrial(lambda trial_seed: make(seed=trial_seed, **options), int(seed))


def make_pruner(spec: dict[str, Any]) -> Any:
    """The Optuna pruner the sweep file names."""
    import optuna

    options = {k: v for k, v in spec.items() if k != "name"}
    classes = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
               "hyperband": optuna.pruners.HyperbandPruner, "threshold": optuna.pruners.ThresholdPruner}
    try:
        return classes[spec["name"]](**options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"pruner {spec['name']}: {err}") from None
