"""Lazy imports of the ``[hybrid]`` extra with an error that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

_HINT = 'pip install "rerank-plugins[hybrid]"'


def require(module: str, *, extra_hint: str = _HINT) -> ModuleType:
    """Import ``module`` or raise ImportError naming the pip command that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"rerank_plugins.hybrid needs the optional package {module!r} ({error}); "
            f"install it with: {extra_hint}"
        ) from error
