"""Where does a training step wait for the GPU?  ``python -m benchmarks.sync_check EXPERIMENT [overrides]``.

Turns on ``torch.cuda.set_sync_debug_mode`` for steps ``first``..``last`` after warm-up, with
``log_every_n_steps`` small enough that logging steps fall inside the window, and prints each
synchronising call site (the innermost frames outside torch) with how often it fired, apart for the
steps that log and the steps that do not. A step that does not log must not synchronise at all. A
logging step may synchronise only at the sites in ``ALLOWED_AT_LOGGING``; anything else there, or any
synchronisation on a step that does not log, makes the exit status 1.
"""

from __future__ import annotations

import collections
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from benchmarks import project

#: the synchronisations a logging step is allowed, by a file (path fragment) in the site's frames, and why
ALLOWED_AT_LOGGING = {
    "non_finite_loss.py": "NonFiniteLossStop: one gather of the loss summed since its last check",
    "preemption.py": "Preemption (SLURM jobs only): the ranks agree whether SIGUSR1 came, every 10 steps",
    "lightning/pytorch/trainer/connectors/logger_connector": "Lightning turns the logged train/loss into a "
                                                             "number for the logger and the progress bar",
    "lightning/pytorch/callbacks/progress": "the progress bar shows the logged loss",
    "lightning/pytorch/loggers": "the logger writes the scalar",
    "lightning/fabric/utilities/apply_func": "Lightning's tensor-to-number conversion of logged metrics",
}

#: steps apart from each other's logging: 5 makes steps 4, 9, 14 (0-based) log within the window 3..12
LOG_EVERY = 5


@dataclass
class Findings:
    """Synchronising sites per kind of step; ``verdict()`` says what is not allowed."""

    logging: collections.Counter = field(default_factory=collections.Counter)
    quiet: collections.Counter = field(default_factory=collections.Counter)
    logging_steps: set[int] = field(default_factory=set)
    quiet_steps: set[int] = field(default_factory=set)

    def add(self, step: int, logs: bool, site: str) -> None:
        (self.logging if logs else self.quiet)[site] += 1

    def allowed(self, site: str) -> str | None:
        return next((why for fragment, why in ALLOWED_AT_LOGGING.items() if fragment in site), None)

    def verdict(self) -> list[str]:
        problems = [f"{count} sync(s) on steps that do not log: {site}" for site, count in self.quiet.items()]
        problems += [f"{count} sync(s) on logging steps at a site not allowed: {site}"
                     for site, count in self.logging.items() if self.allowed(site) is None]
        if not self.logging_steps:
            problems.append("no logging step inside the window: nothing was checked there")
        return problems


def is_logging_step(global_step_before: int, every: int) -> bool:
    """The step the task logs train/loss on (``Task.log_train_loss``) and NonFiniteLossStop checks on."""
    return (global_step_before + 1) % max(1, every) == 0


class SyncDebug(L.Callback):
    def __init__(self, first: int = 3, last: int = 12) -> None:
        self.first, self.last = first, last
        self.findings = Findings()
        self.step: int | None = None
        self.logs = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.first:
            torch.cuda.set_sync_debug_mode("warn")
        if self.first <= batch_idx <= self.last:
            self.step = trainer.global_step
            self.logs = is_logging_step(trainer.global_step, trainer.log_every_n_steps)
            (self.findings.logging_steps if self.logs else self.findings.quiet_steps).add(batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.last:
            torch.cuda.set_sync_debug_mode(0)
            self.step = None
            trainer.should_stop = True


def site_of(stack: list[traceback.FrameSummary]) -> str:
    frames = [f for f in stack if "/torch/" not in f.filename and "warnings" not in f.filename]
    return " <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}" for f in frames[-3:][::-1])


def report(findings: Findings, experiment: str, first: int, last: int) -> list[str]:
    lines = [f"synchronising calls in steps {first}..{last} of {experiment} (log_every_n_steps {LOG_EVERY}):",
             f"steps that do not log ({len(findings.quiet_steps)}):"]
    lines += [f"{count:4d}  {site}" for site, count in findings.quiet.most_common()] or ["   none"]
    lines.append(f"logging steps ({len(findings.logging_steps)}):")
    for site, count in findings.logging.most_common():
        lines.append(f"{count:4d}  {site}  [{findings.allowed(site) or 'NOT ALLOWED'}]")
    if not findings.logging:
        lines.append("   none")
    problems = findings.verdict()
    lines += [f"problem: {p}" for p in problems] or ["ok: no synchronisation outside the allowed logging sites"]
    return lines


def main(argv: list[str]) -> None:
    experiment, overrides = argv[0], argv[1:]
    probe = SyncDebug()
    original = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return original(message, category, filename, lineno, file, line)
        if probe.step is not None:
            probe.findings.add(probe.step, probe.logs, site_of(traceback.extract_stack()[:-1]))

    warnings.showwarning = record
    warnings.simplefilter("always")
    project.fit(experiment, ["--trainer.limit_val_batches", "0", "--trainer.max_epochs", "1",
                             "--trainer.log_every_n_steps", str(LOG_EVERY), *overrides],
                Path(tempfile.mkdtemp()), [probe])
    lines = report(probe.findings, experiment, probe.first, probe.last)
    print("\n".join(lines))
    raise SystemExit(1 if probe.findings.verdict() else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
