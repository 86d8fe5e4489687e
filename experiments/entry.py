"""The entry point of ``python -m experiments`` and the ``litexp`` script: route the subcommand (see
:mod:`experiments.commands`) and say a user's mistake in one line.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from argparse import ArgumentError
from typing import Any

from experiments import commands
from experiments.redact import mask_secrets
from experiments.terminal import condense_error, with_hint


def _user_errors() -> tuple[type[BaseException], ...]:
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    return (ValueError, OSError, MisconfigurationException, ArgumentError)


def main(args: Any = None) -> None:
    """Run one subcommand.

    Mistakes a user can make (a bad value, a missing file, no network, a full disk) end with one line
    naming the option and the fix, exit code 2; LITEXP_TRACEBACK=1 shows the full traceback instead.
    A run stopped by SIGTERM exits 143 (128 + 15, what a shell reports for a process the signal ended), so
    ``fit && export`` does not go on with a half-trained model; Ctrl-C exits 1 (Lightning's own).

    Raises:
        SystemExit: 2 for a user's mistake, 143 after SIGTERM.
    """
    tokens = [str(t) for t in (sys.argv[1:] if args is None else list(args))]
    if not tokens or tokens[0] in ("-h", "--help"):
        print(commands.usage())
        return
    command = commands.BY_NAME.get(tokens[0])
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        if command is not None and command.kind == "standalone":
            module, _, function = str(command.target).partition(":")
            getattr(importlib.import_module(module), function)(tokens[1:])
            return
        from experiments.cli import ExperimentCLI

        ExperimentCLI(args=args)
    except SIGTERMException:
        # Lightning stops the loop with this SystemExit, whose code is None: the process would exit 0
        if rank_zero_only.rank == 0:
            print("stopped by SIGTERM: the run is marked interrupted (resume it with --ckpt_path last)",
                  file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except _user_errors() as err:
        if os.environ.get("LITEXP_TRACEBACK"):
            raise
        from experiments.callbacks import NonFiniteLossError

        rank = rank_zero_only.rank
        message = mask_secrets(with_hint(condense_error(str(err))))  # no URL's password on a terminal
        if rank == 0:
            print(f"error: {message}", file=sys.stderr)
        elif not isinstance(err, NonFiniteLossError):  # that one every rank raises; rank zero says it
            print(f"error (rank {rank}): {message}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        import torch

        # Lightning destroys only NCCL process groups at exit; a gloo group left to the interpreter's
        # shutdown can abort the process ("terminate called without an active exception", seen in
        # about one CPU DDP run in three) after a run that succeeded
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
