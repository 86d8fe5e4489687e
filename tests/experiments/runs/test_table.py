"""``runs --sort`` follows the mode each run's summary recorded, not the metric's name."""

from experiments.runs.table import sort_key


def record(version, value, mode, metric="val/score", test=None):
    return {"version": version, "best_metric": metric, "best_value": value, "monitor": metric, "mode": mode,
            "test_metrics": test or {}, "config": {"model.lr": version / 10}}


def test_best_follows_the_recorded_mode():
    maxed = [record(0, 0.5, "max"), record(1, 0.9, "max"), record(2, None, "max")]
    assert [r["version"] for r in sorted(maxed, key=sort_key("best", maxed))] == [1, 0, 2]
    # a minimised metric whose name says nothing of its direction
    mined = [record(0, 0.5, "min"), record(1, 0.9, "min")]
    assert [r["version"] for r in sorted(mined, key=sort_key("best", mined))] == [0, 1]
    assert [r["version"] for r in sorted(mined, key=sort_key("best", mined, reverse=True))] == [1, 0]


def test_test_counterpart_and_config_keys():
    runs = [record(0, 1, "max", test={"test/score": 0.2}), record(1, 1, "max", test={"test/score": 0.7})]
    assert [r["version"] for r in sorted(runs, key=sort_key("test/score", runs))] == [1, 0]
    assert [r["version"] for r in sorted(runs, key=sort_key("model.lr", runs))] == [0, 1]
