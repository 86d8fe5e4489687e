"""Lightning tasks (what is optimised and measured) and the plain nets they wrap.

The tasks are imported when first used (PEP 562): a process that only runs an inference module, such as a serve
worker unpickling one, does not import Lightning through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {"ImageClassifier": "lit_models.classifier", "Regressor": "lit_models.regressor"}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """The task class ``name``, imported from its home on first use."""
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lit_models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
