"""Cache locations, cheap model-directory fingerprints, atomic array and directory writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


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


#: Bytes read from each of :data:`_SAMPLES` evenly spaced places of a large weight file.
_SAMPLE_BYTES = 64 << 10
_SAMPLES = 17


def sample_digest(path: Path, size: int) -> str:
    """sha256 over ``_SAMPLES`` evenly spaced 64 KiB windows of ``path`` (first and last included).

    A cheap content identity for multi-GB weights: about 1 MiB read, and any retrained layer
    changes the bytes of at least one window (each window is 1/16 of the file apart).
    """
    digest = hashlib.sha256(size.to_bytes(8, "little"))
    last = max(size - _SAMPLE_BYTES, 0)
    with path.open("rb") as handle:
        for i in range(_SAMPLES):
            handle.seek(last * i // (_SAMPLES - 1))
            digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def directory_fingerprint(directory: Path) -> dict[str, Any]:
    """Identify a model directory by its contents, not by where it is or when it was written.

    Every file's name and size; small files (config, tokenizer) and weights up to 8 MiB are
    content-hashed, larger weights by :func:`sample_digest`. The same model reinstalled in a
    new virtualenv, or copied elsewhere, keeps its fingerprint, so caches keyed by it (the
    document embeddings, the ONNX exports) are reused instead of recomputed.
    """
    files: dict[str, Any] = {}
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        size = entry.stat().st_size
        record: dict[str, Any] = {"size": size}
        if size <= 8 << 20:
            record["sha256"] = sha256_file(entry)
        else:
            record["sampled_sha256"] = sample_digest(entry, size)
        files[entry.name] = record
    return {"files": files}


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


# ---------------------------------------------------------------------------- directories
#: Sibling names of a directory being written (``tmp``) or replaced (``old``), tagged with the
#: writer's pid so leftovers of a killed writer can be told from a live writer's work.
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]+$")


def _sibling(final: Path, kind: str) -> Path:
    return final.parent / f".{final.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        handle = os.open(path, flags)
    except OSError:  # e.g. directories cannot be opened on Windows: best effort
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
            os.fsync(handle)
    finally:
        os.close(handle)


def _fsync_tree(directory: Path) -> None:
    """Flush every file below ``directory``, then the directories themselves."""
    for root, _, files in os.walk(directory):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))


def recover_directory(final: str | os.PathLike[str]) -> None:
    """Clean up after writers of ``final`` that were killed mid-write.

    Removes their ``.<name>.tmp-*`` (unfinished) and ``.<name>.old-*`` (replaced) siblings;
    when ``final`` itself is missing because a writer died between moving the old copy
    aside and moving the new one in, the newest old copy is moved back first. Siblings of
    a live writer (this process included) are left alone.
    """
    final = Path(final).expanduser().absolute()
    if not final.parent.is_dir():
        return
    dead: list[tuple[str, Path]] = []
    for entry in final.parent.iterdir():
        match = _SIBLING.match(entry.name)
        if match and match["name"] == final.name and not _alive(int(match["pid"])):
            dead.append((match["kind"], entry))
    olds = sorted((p for kind, p in dead if kind == "old"), key=lambda p: p.stat().st_mtime_ns)
    if olds and not final.exists():
        with contextlib.suppress(OSError):  # another writer restored or replaced it first
            os.replace(olds.pop(), final)
    for _, entry in dead:
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)


def staging_directory(final: str | os.PathLike[str]) -> Path:
    """A new empty directory next to ``final`` to write into, then :func:`publish_directory`.

    Leftovers of killed writers of ``final`` are cleaned up first (:func:`recover_directory`).
    """
    final = Path(final).expanduser().absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(final)
    staging = _sibling(final, "tmp")
    staging.mkdir()
    return staging


def publish_directory(staging: Path, final: str | os.PathLike[str]) -> None:
    """Move the finished ``staging`` directory to ``final`` atomically, replacing what is there.

    Every file is fsynced before the rename and the parent directory after it, so a crash
    leaves either the old or the new directory, never a partial one. An existing ``final``
    is moved aside first and restored if the rename fails (e.g. another writer published
    at the same moment: the ``OSError`` is re-raised and ``staging`` is left for the caller).
    A ``final`` that exists but is not a directory is never replaced: ``FileExistsError``.
    """
    final = Path(final).expanduser().absolute()
    if final.exists() and not final.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        raise FileExistsError(f"{final} exists and is not a directory")
    _fsync_tree(staging)
    old = None
    if final.exists():
        old = _sibling(final, "old")
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except BaseException:
        if old is not None and not final.exists():
            os.replace(old, final)
            old = None
        raise
    finally:
        _fsync(final.parent)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)
