"""Cache locations, cheap model-directory fingerprints, atomic array writes and directory publishes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")


def cache_root(kind: str) -> Path:
    """``$RERANK_PLUGINS_CACHE/<kind>`` when set, else ``~/.cache/rerank-plugins/<kind>``."""
    env = os.environ.get("RERANK_PLUGINS_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "rerank-plugins"
    return base / kind


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_fingerprint(directory: Path) -> dict[str, Any]:
    """Identify a model directory's contents cheaply: every file's name, size and mtime.

    Small files (config, tokenizer) are content-hashed too; weight files are identified by
    size and modification time so a multi-GB checkpoint is not re-read on every load.
    """
    files: dict[str, Any] = {}
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        stat = entry.stat()
        record: dict[str, Any] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if not entry.name.endswith(WEIGHT_SUFFIXES) and stat.st_size <= 8 << 20:
            record["sha256"] = sha256_file(entry)
        files[entry.name] = record
    return {"directory": str(directory), "files": files}


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` via a temp file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".npy.tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.save(out, array, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def new_temp_directory(final: Path) -> Path:
    """An empty ``.<name>.tmp-*`` directory beside ``final`` (same filesystem: atomic rename)."""
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))


def atomic_directory(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Create an empty temp directory next to ``path``; returns ``(final, temp)``.

    Fill ``temp``, then :func:`commit_directory` it: a reader never sees a half-written
    directory at ``final`` (same filesystem, so the rename is atomic).
    """
    final = Path(path).expanduser().absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    return final, new_temp_directory(final)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """fsync every file, then every directory (deepest first) under ``directory``."""
    paths = sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    for path in paths:
        if path.is_file():
            _fsync(path)
    for path in [*(p for p in paths if p.is_dir()), directory]:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            _fsync(path)


def commit_directory(final: Path, temp: Path, *, fsync: bool = True) -> None:
    """Move ``temp`` to ``final``, replacing an existing directory there as a whole.

    With ``fsync`` the files are on disk before the rename, so a crash leaves the old or the
    new directory, never a renamed one with empty files. The previous ``final`` goes to
    ``.<name>.old-*`` for the instant between the two renames and is then deleted.
    """
    if final.exists() and not final.is_dir():
        shutil.rmtree(temp, ignore_errors=True)
        raise FileExistsError(f"{final} exists and is not a directory")
    if fsync:
        fsync_tree(temp)
    old = None
    if os.path.lexists(final):
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        old.rmdir()
        os.replace(final, old)
    try:
        os.replace(temp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    with contextlib.suppress(OSError):
        _fsync(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
