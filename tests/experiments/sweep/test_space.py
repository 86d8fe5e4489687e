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
