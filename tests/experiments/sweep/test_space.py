"""Sweep files parsed and checked without running anything."""

import pytest
import yaml

from experiments.sweep import space


def write(tmp_path, spec):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_sweep_file_reads_into_parameters(tmp_path):
    spec = {"n_trials": 4, "parameters": {"a.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                                          "a.widths": {"type": "categorical", "choices": [[8, 8], [16]]}},
            "enqueue": [{"a.lr": 0.01}]}
    parsed = space.read(write(tmp_path, spec))
    assert parsed.n_trials == 4 and [p.name for p in parsed.parameters] == ["a.lr", "a.widths"]
    assert parsed.parameters[1].choices == ["[8, 8]", "[16]"] and parsed.sampler["name"] == "tpe"
    assert space.as_cli_value(True) == "true" and space.as_cli_value([1, 2]) == "[1, 2]"


@pytest.mark.parametrize("spec, words", [
    ({"parameters": {"x": {"type": "float", "low": 1, "high": 0}}}, "inverted range"),
    ({"parameters": {"x": {"type": "int", "low": 0, "high": 3, "log": True}}}, "log range"),
    ({"parameters": {"x": {"type": "float", "low": 0, "high": 1}}, "n_trials": 0}, "n_trials"),
    ({"parameters": {"x": {"type": "float", "low": 0, "high": 1}}, "enqueue": [{"x": 5}]}, "outside"),
    ({"params": {}}, "unknown key"),
])
def test_mistakes_are_one_line(tmp_path, spec, words):
    with pytest.raises(ValueError, match=words):
        space.read(write(tmp_path, spec))


@pytest.mark.parametrize("sampler", [{"name": "tpe", "seed": 7}, {"name": "random", "seed": 7},
                                     {"name": "grid", "seed": 7}])
def test_workers_sharing_a_seeded_study_draw_apart_and_a_sweep_repeats(tmp_path, sampler):
    """Two workers, each with its own sampler built from the same file, asking in turn on one study (as two
    processes on one database do): no two trials get the same values; a second study repeats the first.
    """
    import optuna

    spec = space.read(write(tmp_path, {"sampler": sampler, "parameters": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True} if sampler["name"] != "grid" else
        {"type": "categorical", "choices": [1, 2, 3, 4, 5, 6]},
        "width": {"type": "categorical", "choices": [8, 16, 32]}}}))

    def drawn(name: str) -> list[tuple]:
        storage = optuna.storages.InMemoryStorage()
        workers = [optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                       sampler=space.make_sampler(spec.sampler, spec.parameters)) for _ in range(2)]
        values = []
        for number in range(6):
            trial = workers[number % 2].ask()
            values.append((trial.suggest_float("lr", 1e-4, 1e-1, log=True) if sampler["name"] != "grid"
                           else trial.suggest_categorical("lr", [1, 2, 3, 4, 5, 6]),
                           trial.suggest_categorical("width", [8, 16, 32])))
            if number % 2:  # the pair asked together finishes together
                for study in workers:
                    for running in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
                        study.tell(running.number, 1.0)
                        break
        return values

    first = drawn("a")
    assert len(set(first)) == len(first), first
    assert drawn("b") == first
