"""Shared helpers: run the real CLI, read what a run wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datamodules.bundled.synthetic import write_cifar10

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def cli_env(extra: dict | None = None) -> dict[str, str]:
    """This environment with the project first on PYTHONPATH (the user's entries kept after it)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(extra or {})}


def default_sigint() -> None:
    """``preexec_fn`` of a child that must stop on Ctrl-C: a shell's background job ignores SIGINT, its children
    inherit that, and Python then installs no KeyboardInterrupt handler (the suite started with ``&``).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: what makes a command need an interpreter of its own: DDP launches its ranks by running the command line again,
#: and these callbacks kill or signal the process they run in
NEEDS_A_PROCESS = ("ddp", "tests.helpers.Kill", "tests.helpers.Signal")


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None, check: bool = True,
            new_process: bool | None = None) -> subprocess.CompletedProcess:
    """``python -m experiments ARGS`` working in ``cwd``: in this process (:func:`cli_here`) unless the command
    needs one of its own (``new_process``; default: when an argument names something in :data:`NEEDS_A_PROCESS`),
    then in a fresh one, stopped after ``timeout`` seconds.
    """
    if new_process is None:
        new_process = any(word in arg for arg in args for word in NEEDS_A_PROCESS)
    if not new_process:
        return cli_here(*args, cwd=cwd, env=env, check=check)
    full_env = cli_env(env)
    result = subprocess.run(
        [sys.executable, "-m", "experiments", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, preexec_fn=default_sigint,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"CLI failed ({result.returncode}): {' '.join(args)}\n--- stdout\n{result.stdout[-3000:]}"
            f"\n--- stderr\n{result.stderr[-5000:]}"
        )
    return result


def cli_here(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m experiments ARGS`` run in this process, as :func:`run_cli` runs it in a new one.

    For tests of what the CLI does, not of the process around it (signals, exit on a kill, DDP, a server): the
    interpreter, torch and Lightning are imported once for the whole suite instead of once per command. The
    working folder and the environment are the command's while it runs and restored after; what it prints,
    logs and warns comes back as ``stdout`` and ``stderr``; ``returncode`` is its exit code (1 for an exception
    that escapes, with its traceback in ``stderr``, as a process would show it).
    """
    import contextlib
    import io
    import logging
    import traceback
    import warnings

    from experiments.entry import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    streams = [h for name in ("lightning", "lightning.pytorch", "lightning.fabric")
               for h in logging.getLogger(name).handlers if isinstance(h, logging.StreamHandler)]
    saved_streams = [h.stream for h in streams]
    code = 0
    try:
        os.environ.update(cli_env(env))
        os.chdir(cwd)
        for handler in streams:
            handler.setStream(err)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.resetwarnings()  # a new interpreter's filters: what a user's terminal would show
            for action, category in (("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                                     ("ignore", ImportWarning), ("ignore", ResourceWarning)):
                warnings.simplefilter(action, category)
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: err.write(
                warnings.formatwarning(message, category, filename, lineno, line))
            try:
                main(list(args))
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except Exception:  # noqa: BLE001 - a process would print it and exit 1
                traceback.print_exc(file=err)
                code = 1
    finally:
        for handler, stream in zip(streams, saved_streams, strict=True):
            handler.setStream(stream)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    result = subprocess.CompletedProcess(["python", "-m", "experiments", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"CLI failed ({code}): {' '.join(args)}\n--- stdout\n{result.stdout[-3000:]}"
                             f"\n--- stderr\n{result.stderr[-5000:]}")
    return result


def image_steps(run_dir: Path) -> dict[str, list[int]]:
    """{image tag: [global steps it was written at]} from every event file of a run folder."""
    steps: dict[str, list[int]] = {}
    for event_file in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"images": 0})
        acc.Reload()
        for tag in acc.Tags()["images"]:
            steps.setdefault(tag, []).extend(e.step for e in acc.Images(tag))
    return steps


def event_data(run_dir: Path) -> tuple[dict[str, list], list[str]]:
    """Scalars ({tag: [(step, value)]}) and image tags from every event file of a run folder."""
    scalars: dict[str, list] = {}
    images: list[str] = []
    for event_file in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
        images.extend(acc.Tags()["images"])
    return scalars, images


# -- callbacks the CLI loads by class path in subprocess tests ---------------------------------------

import lightning as L  # noqa: E402
import torch  # noqa: E402


class KillAfterEpoch(L.Callback):
    """SIGKILL this very process once epoch ``epoch`` is over and its checkpoints are written
    (at the start of the next epoch): a hard crash, no clean-up of any kind.
    """

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch + 1:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


class KillOnceInRun(L.Callback):
    """SIGKILL this process at the start of epoch 1 of run ``version_<version>``, once: ``marker`` is
    written first, and a run that finds it carries on (so the same command can be started again).
    """

    def __init__(self, version: int, marker: str) -> None:
        self.version = version
        self.marker = Path(marker)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1 and trainer.logger.version == self.version and not self.marker.exists():
            import signal

            self.marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)


class SleepPerEpoch(L.Callback):
    """Each training epoch lasts at least ``seconds`` more: a trial long enough for timing to be certain."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        import time

        time.sleep(self.seconds)


class PoisonWeightsAtEpoch(L.Callback):
    """Turns the first weight tensor into NaN at the start of epoch ``epoch``."""

    def __init__(self, epoch: int = 2) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class RecordTrainSamples(L.Callback):
    """Saves, per rank and epoch, a fingerprint of every training sample the rank received."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.extend(fingerprints(batch[0]))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.seen, self.folder / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.pt")
        self.seen = []


def fingerprints(x: torch.Tensor) -> list[int]:
    """One exact identifier per sample: the hash of its bytes."""
    import hashlib

    rows = x.detach().cpu().contiguous().flatten(1).numpy()
    return [int(hashlib.sha1(row.tobytes()).hexdigest()[:15], 16) for row in rows]


def callback_arg(class_name: str, **init_args) -> str:
    """``--trainer.callbacks+=`` value for one of the callbacks above."""
    import json

    return json.dumps({"class_path": f"tests.helpers.{class_name}", "init_args": init_args})


class RecordRandomDraws(L.Callback):
    """Per rank and epoch: the first augmented training batch, the global torch stream and the data
    module's augmentation stream, as hashes written to ``folder/rank{r}_epoch{e}.pt``.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx != 0:
            return
        generator = getattr(trainer.datamodule, "_generator", None)
        record = {
            "batch": fingerprints(batch[0]),
            "torch": fingerprints(torch.get_rng_state().view(1, -1))[0],
            "augment": fingerprints(generator.get_state().view(1, -1))[0] if generator is not None else None,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(record, self.folder / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.pt")


class NanLossOnRank(L.Callback):
    """Makes the training loss that rank ``rank`` reports at ``step`` NaN (the other ranks' stay finite)."""

    def __init__(self, rank: int = 1, step: int = 3) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            outputs["loss"] = torch.tensor(float("nan"))


class SignalAtStep(L.Callback):
    """Sends ``signum`` to this process before training step ``step``, unless the job was requeued."""

    def __init__(self, step: int = 2, signum: int = 10) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and os.environ.get("SLURM_RESTART_COUNT", "0") == "0":
            os.kill(os.getpid(), self.signum)


def synthetic_cifar_args(root: Path, per_batch: int, batch_size: int) -> list[str]:
    """Write synthetic CIFAR-10 files under ``root`` (``per_batch`` images in each of the five training
    files, the first ``per_batch`` held out for validation) and return the options that point the
    CIFAR-10 data module at them.
    """
    write_cifar10(root, per_batch=per_batch, n_test=per_batch)
    return ["--data.init_args.data_dir", str(root), "--data.init_args.download", "false",
            "--data.init_args.verify_integrity", "false", "--data.init_args.val_size", str(per_batch),
            "--data.init_args.batch_size", str(batch_size), "--trainer.enable_progress_bar", "false"]


class SignalAtEpoch(L.Callback):
    """Sends ``signal_name`` (SIGINT: what Ctrl-C sends; SIGTERM: kill, systemd) to this process at the
    start of epoch ``epoch``.
    """

    def __init__(self, epoch: int, signal_name: str) -> None:
        self.epoch = epoch
        self.signal_name = signal_name

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            import signal

            os.kill(os.getpid(), getattr(signal, self.signal_name))


class SignalOnRankAtStep(L.Callback):
    """Sends ``signum`` to this process before training step ``steps[rank]``: each rank at its own point."""

    def __init__(self, steps: list[int], signum: int = 10) -> None:
        self.steps, self.signum = steps, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.steps[trainer.global_rank]:
            os.kill(os.getpid(), self.signum)
