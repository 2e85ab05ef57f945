"""Resolve a model argument (hub id or local directory) with errors that help offline users."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class ModelNotFoundError(OSError):
    """A model could not be found locally or in the Hugging Face cache/hub."""


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or name.count("/") > 1
        or (len(name) > 1 and name[1] == ":")
        or (os.sep in name and os.sep != "/")
    )


def resolve_model_source(name: str | os.PathLike[str], *, what: str) -> str:
    """Return a string for ``from_pretrained``: an existing local directory or a hub id.

    A name that exists on disk must be a directory with a ``config.json``; a name that looks
    like a path but does not exist raises :class:`ModelNotFoundError` at once instead of
    being sent to the hub as an id.
    """
    text = os.fspath(name)
    if not text.strip():
        raise ValueError(f"{what} model name is empty")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(
                f"{what} model path {str(path)!r} is a file; pass the directory that holds "
                "config.json and the weights"
            )
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise ModelNotFoundError(
                f"{what} model directory {str(path)!r} has no config.json; "
                f"found: {sorted(p.name for p in path.iterdir())[:10]}"
            )
        return str(path)
    if _looks_like_path(text):
        raise ModelNotFoundError(
            f"{what} model directory {str(path)!r} does not exist. Pass an existing local "
            "directory (with config.json and weights) or a hub id such as "
            "'cross-encoder/ms-marco-MiniLM-L-6-v2'."
        )
    return text


def pretrained_kwargs(
    *, revision: str | None, local_files_only: bool | None, trust_remote_code: bool
) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained`` with only the settings the caller gave."""
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision is not None:
        kwargs["revision"] = revision
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    return kwargs


def offline_hint(name: str, what: str, error: BaseException) -> ModelNotFoundError:
    """Wrap a loading failure for a hub id into an error that says how to work offline."""
    return ModelNotFoundError(
        f"could not load {what} model {name!r}: looked for a local directory of that name "
        f"(none exists) and for the hub id in the Hugging Face cache/hub ({error}). "
        "When offline, download the model on a connected machine (e.g. "
        "`huggingface-cli download <id> --local-dir ./models/<name>`) and pass that directory, "
        "or set HF_HUB_OFFLINE=1 with the model already in your Hugging Face cache."
    )
