"""One check for the ``[serve]`` extra, so a missing package names what to install."""

from __future__ import annotations

import importlib

#: Import names of the packages ``create_app`` and ``rerank-plugins serve`` need.
SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus_client")


def require_serve_extra() -> None:
    """Raise ImportError naming the ``[serve]`` extra when one of its packages is missing."""
    missing = []
    for name in SERVE_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f'serving needs {", ".join(missing)}: pip install "rerank-plugins[serve]"',
            name=missing[0],
        )
