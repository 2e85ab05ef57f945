"""On-disk format of a :class:`~rerank_plugins.hybrid.HybridRetriever` (no pickle anywhere).

A saved index is a directory::

    manifest.json     format_version, settings, embedder name, count, dim, ids, texts, metadatas
    embeddings.npy    (count, dim) float32, L2-normalised            [dense only]
    dense.faiss       faiss.write_index                                [dense only, count > 0]
    bm25/             bm25s's own save format                          [bm25 only, count > 0]

It is written to a temporary sibling directory and renamed into place, so a reader never sees
a half-written index and an existing index at ``path`` is replaced as a whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._files import publish_directory, staging_directory

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npy"
FAISS_FILE = "dense.faiss"
BM25_DIR = "bm25"


class IndexFormatError(ValueError):
    """A saved index is missing, truncated, corrupt, or from another format version."""


def atomic_directory(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Create an empty temp directory next to ``path``; returns ``(final, temp)``."""
    final = Path(path).expanduser().absolute()
    return final, staging_directory(final)


def commit_directory(final: Path, temp: Path) -> None:
    """Move ``temp`` to ``final``, replacing an existing index directory there."""
    publish_directory(temp, final)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    try:
        text = json.dumps(manifest, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"metadata must be JSON-serialisable to save the index ({error})"
        ) from error
    (directory / MANIFEST).write_text(text, encoding="utf-8")


def read_manifest(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise IndexFormatError(f"index directory {str(directory)!r} does not exist")
    path = directory / MANIFEST
    if not path.is_file():
        raise IndexFormatError(f"{path} is missing; is {directory} a saved HybridRetriever?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IndexFormatError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(manifest, dict):
        raise IndexFormatError(f"{path} must hold a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} has format_version {version!r}; this version of rerank-plugins reads "
            f"format_version {FORMAT_VERSION}"
        )
    required = ("settings", "count", "ids", "texts", "metadatas")
    missing = [key for key in required if key not in manifest]
    if missing:
        raise IndexFormatError(f"{path} lacks the keys {missing}")
    count = manifest["count"]
    for key in ("ids", "texts", "metadatas"):
        if not isinstance(manifest[key], list) or len(manifest[key]) != count:
            found = len(manifest[key]) if isinstance(manifest[key], list) else "no list"
            raise IndexFormatError(f"{path}: '{key}' has {found} entries but count is {count}")
    return manifest


def read_embeddings(directory: Path, count: int) -> np.ndarray:
    path = directory / EMBEDDINGS
    if not path.is_file():
        raise IndexFormatError(f"{path} is missing")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise IndexFormatError(f"{path} is truncated or not a .npy file ({error})") from error
    if array.ndim != 2 or array.dtype != np.float32:
        raise IndexFormatError(
            f"{path} must be a 2-D float32 array, got {array.dtype} {array.shape}"
        )
    if array.shape[0] != count:
        raise IndexFormatError(
            f"{path} has {array.shape[0]} rows but manifest.json lists {count} documents"
        )
    return np.ascontiguousarray(array)
