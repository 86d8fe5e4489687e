"""Fixtures shared by the tests of the experiments/ packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.experiments.trained_runs import train_runs


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """Trained once per session for predict, export, serve, runs and TensorBoard: see ``train_runs``."""
    return train_runs(tmp_path_factory.mktemp("results"))
