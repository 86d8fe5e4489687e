"""sync_check's window holds logging steps and its verdict: none on quiet steps, listed sites on logging
steps.

The measurement itself needs a CUDA GPU; this is its bookkeeping, on the CPU.
"""

from __future__ import annotations

from benchmarks.sync_check import LOG_EVERY, Findings, SyncDebug, is_logging_step, report


def test_the_window_holds_logging_and_quiet_steps():
    probe = SyncDebug()
    steps = range(probe.first, probe.last + 1)
    logging = [s for s in steps if is_logging_step(s, LOG_EVERY)]
    assert logging == [4, 9] and len(logging) < len(steps)


def test_verdict_allows_listed_sites_on_logging_steps_only():
    findings = Findings(logging_steps={4, 9}, quiet_steps={3, 5})
    findings.add(4, True, "experiments/callbacks/non_finite_loss.py:52 _check")
    findings.add(9, True, "lightning/pytorch/trainer/connectors/logger_connector/result.py:300 metrics")
    assert findings.verdict() == []
    assert report(findings, "x", 3, 12)[-1].startswith("ok:")
    findings.add(5, False, "lit_models/task.py:150 log_train_loss")
    findings.add(4, True, "lit_models/classifier.py:110 training_step")
    problems = findings.verdict()
    assert problems == ["1 sync(s) on steps that do not log: lit_models/task.py:150 log_train_loss",
                        "1 sync(s) on logging steps at a site not allowed: lit_models/classifier.py:110 training_step"]
    assert "NOT ALLOWED" in "\n".join(report(findings, "x", 3, 12))
    assert Findings(quiet_steps={3}).verdict() == ["no logging step inside the window: nothing was checked there"]
