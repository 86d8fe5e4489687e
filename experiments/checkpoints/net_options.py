"""What a checkpoint contributes to the config of a run that loads it: the net's architecture, nothing else.

LightningCLI on its own applies every hyperparameter saved in the checkpoint over the parsed config,
so ``test --ckpt_path best --model.init_args.tta_flip true`` would run without test-time flips. Here
the user's config (YAML files, then the command line) decides everything, except the net: its
saved ``class_path``/``init_args`` replace the YAML's, because the weights were trained for that
architecture. A net option typed on the command line is applied on top; if it changes the shapes
of the weights, the run stops with one line that names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

NET = "model.init_args.net"


def explicit_net_options(args: list[str]) -> set[str]:
    """Names of the net's ``init_args`` given on the command line (``*`` for the whole net).

    Both spellings jsonargparse accepts count: ``--model.init_args.net.init_args.widths`` and
    ``--model.net.widths``, with the value after a space or an ``=``.
    """
    found: set[str] = set()
    for token in args:
        if not token.startswith("--model."):
            continue
        parts = [p for p in token[2:].split("=", 1)[0].split(".") if p != "init_args"]
        if parts[:2] != ["model", "net"]:
            continue
        found.add(parts[2] if len(parts) > 2 and parts[2] != "class_path" else "*")
    return found


def saved_net(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The net's ``{"class_path", "init_args"}`` saved in a checkpoint's hyperparameters, if any."""
    net = (checkpoint.get("hyper_parameters") or {}).get("net")
    return net if isinstance(net, dict) and "class_path" in net else None


def merge_net(saved: dict[str, Any], configured: dict[str, Any], explicit: set[str],
              evaluates: bool = False) -> dict[str, Any]:
    """The saved net, with the options typed on the command line taken from ``configured``.

    ``evaluates``: a command that only evaluates the checkpoint (not a resumed fit, whose parameter groups follow
    the starting weights). Its net's starting ``weights`` become ``none``: the checkpoint's weights replace them
    anyway, and a machine that serves a model need not reach torchvision's download, nor hold the file a run
    started from.
    """
    if "*" in explicit or saved.get("class_path") != configured.get("class_path"):
        return configured  # another net altogether: the checkpoint check names the mismatch
    init_args = dict(saved.get("init_args") or {})
    if evaluates and "weights" in init_args:
        init_args["weights"] = "none"
    given = configured.get("init_args") or {}
    for name in explicit:
        if name in given:
            init_args[name] = given[name]
    return {"class_path": saved["class_path"], "init_args": init_args}


def check_weights_fit(model: nn.Module, checkpoint: dict[str, Any], checkpoint_path: str | Path,
                      explicit: set[str]) -> None:
    """ValueError naming the command-line net options when the model's weights differ in shape from
    the checkpoint's (only shapes are compared: a memory-mapped checkpoint is not read).
    """
    stored = checkpoint.get("state_dict") or {}
    built = model.state_dict()
    differing = [k for k in stored if k in built and tuple(stored[k].shape) != tuple(built[k].shape)]
    missing = [k for k in stored if k not in built] + [k for k in built if k not in stored]
    if not differing and not missing:
        return
    key = (differing or missing)[0]
    shapes = (f"{key} is {tuple(stored[key].shape)} in the checkpoint but {tuple(built[key].shape)} here"
              if differing else f"{key} is in only one of them")
    saved_args = (saved_net(checkpoint) or {}).get("init_args") or {}
    typed = sorted(name for name in explicit if name != "*")
    if typed:
        trained = ", ".join(f"{name}={saved_args.get(name)!r}" for name in typed)
        raise ValueError(
            f"{', '.join(f'--{NET}.init_args.{name}' for name in typed)} "
            f"{'contradicts' if len(typed) == 1 else 'contradict'} the weights in "
            f"{checkpoint_path} ({shapes}), which were trained with {trained}; drop the option, or pass a "
            "checkpoint trained with it"
        )
    raise ValueError(
        f"the net built from the config does not fit the weights in {checkpoint_path} ({shapes}); pass the "
        "config the checkpoint was trained with"
    )
