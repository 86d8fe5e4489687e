"""What a user reads in the terminal: mistakes as one line, tables as aligned columns.

Every command prints through here, so an error looks the same whichever command raised it and
``runs`` and ``sweep`` draw their tables alike.
"""

from __future__ import annotations

import argparse
import re

from typing_extensions import override

#: the longest error line printed; longer ones are cut at a word boundary
MAX_ERROR_CHARS = 400

_NOISE = (
    "Given value",
    "Expected a <class 'NoneType'>",
    "Subtypes:",
    "Errors:",
    "Does not validate against any of the Union subtypes",
    "Problem with given class_path",
)


def condense_error(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """One line out of jsonargparse's nested report: the innermost reasons, without the dumps."""
    lines = [re.sub(r"^\s*-\s+", "", line).strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(_NOISE)]
    text = " ".join(kept) if kept else " ".join(message.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    if " " in cut[limit // 2 :]:  # end on a whole word
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "..."


#: options Lightning's own CLI has and this project's does not, with where the setting lives here
_MOVED_OPTIONS = {
    "optimizer": "the optimizer is an option of the task: --model.init_args.optimizer torch.optim.AdamW "
                 "--model.init_args.optimizer.init_args.lr 1e-3",
    "lr_scheduler": "the schedule is an option of the task: --model.init_args.lr_scheduler "
                    "torch.optim.lr_scheduler.CosineAnnealingLR ... (null for none)",
}


#: what a logger option takes, added to jsonargparse's report of one it cannot build
LOGGER_HINT = ("--trainer.logger takes Lightning logger classes, added beside TensorBoard: "
               "--trainer.logger+=CSVLogger, --trainer.logger+=MLFlowLogger (or -c experiments/presets/mlflow.yaml), "
               "or a full import path "
               "(my_package.MyLogger)")


def with_hint(message: str) -> str:
    """The message, with where an option lives when it names one that Lightning's CLI has and this one
    moved (``--optimizer``: the task's, so sweeps, checkpoints and HPARAMS see it), and what a logger is
    when ``--trainer.logger`` names something else.
    """
    if 'key "trainer.logger"' in message:
        unknown = re.search(r"Expected a dot import path string: (\S+)", message)
        named = f"{unknown.group(1)} is not a logger class; " if unknown else ""
        return f"{named}{LOGGER_HINT}"
    if "unrecognized arguments" not in message:
        return message
    for option, hint in _MOVED_OPTIONS.items():
        if re.search(rf"--{option}(\b|[.=])", message):
            return f"{message}; {hint}"
    return message


class OneLineParser(argparse.ArgumentParser):
    """argparse for the commands that are not LightningCLI's (``runs``, ``sweep``): raises its message
    (the entry point prints it as one ``error:`` line, exit 2) instead of usage + exit.
    """

    @override
    def error(self, message: str) -> None:
        raise ValueError(f"{self.prog}: {message}")


def listed(names: list[str], shown: int = 6) -> str:
    """``N (a, b, c, ...)``: a list of names short enough for a one-line message."""
    return f"{len(names)} ({', '.join(names[:shown])}{', ...' if len(names) > shown else ''})"


def render_table(header: list[str], body: list[list[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body]
    return "\n".join(lines)
