"""The one message every data module gives when torchvision's download fails."""

from __future__ import annotations

from pathlib import Path


def download_failed(what: str, where: str | Path, err: BaseException, copy_hint: str) -> ConnectionError:
    """``could not download WHAT into WHERE (first line of the cause); ...`` as one line."""
    text = str(err).strip()
    reason = text.splitlines()[0] if text else type(err).__name__
    return ConnectionError(
        f"could not download {what} into {where} ({reason}); check the network, or copy {copy_hint} there "
        "and pass --data.download false"
    )
