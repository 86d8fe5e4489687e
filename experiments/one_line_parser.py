"""argparse for the commands that are not LightningCLI's (``runs``, ``sweep``): mistakes as one line."""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """Raises its message (``main()`` prints it as one ``error:`` line, exit 2) instead of usage + exit."""

    def error(self, message: str) -> None:
        raise ValueError(f"{self.prog}: {message}")
