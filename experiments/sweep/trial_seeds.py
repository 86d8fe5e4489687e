"""A seeded sampler that several workers can share a study with: seeded again for every trial by its number.

Each worker builds the sampler from the sweep file, so with a fixed seed every worker's sampler starts in
the same state, and Optuna's seeded samplers then draw the same parameters in each worker (measured: two
workers on one PostgreSQL study ran trials 0 and 1 with identical values, and 2 and 3). The trial number is
handed out once by the storage, so building the sampler for each trial with ``seed + number`` keeps a sweep
reproducible and its workers apart. Only Optuna's public sampler interface is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optuna.samplers import BaseSampler
from typing_extensions import override


class SeedPerTrial(BaseSampler):
    """Delegates to ``build(seed + trial.number)``, made anew in :meth:`before_trial`."""

    def __init__(self, build: Callable[[int], BaseSampler], seed: int) -> None:
        self.build = build
        self.seed = seed
        self.current = build(seed)

    @override
    def before_trial(self, study: Any, trial: Any) -> None:
        self.current = self.build(self.seed + trial.number)
        self.current.before_trial(study, trial)

    @override
    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return self.current.infer_relative_search_space(study, trial)

    @override
    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        return self.current.sample_relative(study, trial, search_space)

    @override
    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        return self.current.sample_independent(study, trial, param_name, param_distribution)

    @override
    def after_trial(self, study: Any, trial: Any, state: Any, values: Sequence[float] | None) -> None:
        self.current.after_trial(study, trial, state, values)

    @override
    def reseed_rng(self) -> None:
        self.current.reseed_rng()
