"""Atomic directory publishing shared by the ONNX export cache and saved indexes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rerank_plugins._files import publish_directory, recover_directory, staging_directory


def _write(directory: Path, text: str) -> None:
    (directory / "data.txt").write_text(text, encoding="utf-8")


def _siblings(final: Path) -> list[str]:
    return sorted(p.name for p in final.parent.iterdir() if p.name != final.name)


def test_publish_creates_then_replaces_and_leaves_nothing_behind(tmp_path):
    final = tmp_path / "entry"
    staging = staging_directory(final)
    assert staging.parent == tmp_path and staging.name.startswith(".entry.tmp-")
    _write(staging, "one")
    publish_directory(staging, final)
    assert (final / "data.txt").read_text() == "one"
    second = staging_directory(final)
    _write(second, "two")
    publish_directory(second, final)
    assert (final / "data.txt").read_text() == "two"
    assert _siblings(final) == []


def test_publish_refuses_to_replace_a_file(tmp_path):
    final = tmp_path / "entry"
    final.write_text("not a directory")
    staging = staging_directory(final)
    with pytest.raises(FileExistsError, match="not a directory"):
        publish_directory(staging, final)
    assert final.read_text() == "not a directory" and _siblings(final) == []


def test_failed_rename_restores_the_old_copy(tmp_path, monkeypatch):
    final = tmp_path / "entry"
    first = staging_directory(final)
    _write(first, "old")
    publish_directory(first, final)
    staging = staging_directory(final)
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(src) == staging:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        publish_directory(staging, final)
    assert (final / "data.txt").read_text() == "old"


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_a_killed_writer_are_cleaned_up(tmp_path):
    final = tmp_path / "entry"
    final.mkdir()
    _write(final, "current")
    dead = _dead_pid()
    for kind in ("tmp", "old"):
        leftover = tmp_path / f".entry.{kind}-{dead}-abcd1234"
        leftover.mkdir()
        _write(leftover, kind)
    live = tmp_path / f".entry.tmp-{os.getpid()}-abcd1234"  # this process: maybe in use
    live.mkdir()
    other = tmp_path / f".other.tmp-{dead}-abcd1234"  # another directory's: not ours
    other.mkdir()
    recover_directory(final)
    assert _siblings(final) == sorted([live.name, other.name])
    assert (final / "data.txt").read_text() == "current"


def test_a_kill_between_the_renames_is_recovered(tmp_path):
    final = tmp_path / "entry"
    dead = _dead_pid()
    old = tmp_path / f".entry.old-{dead}-0000aaaa"
    old.mkdir()
    _write(old, "survivor")
    unfinished = tmp_path / f".entry.tmp-{dead}-0000bbbb"
    unfinished.mkdir()
    staging = staging_directory(final)  # the next writer recovers first
    assert (final / "data.txt").read_text() == "survivor"
    assert _siblings(final) == [staging.name]


def test_sigkill_during_a_save_leaves_the_previous_copy_usable(tmp_path):
    final = tmp_path / "entry"
    first = staging_directory(final)
    _write(first, "previous")
    publish_directory(first, final)
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from rerank_plugins._files import staging_directory
        staging = staging_directory(Path({str(final)!r}))
        (staging / "data.txt").write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", script], env=env, timeout=120, check=False)
    assert any(name.startswith(".entry.tmp-") for name in _siblings(final))
    staging = staging_directory(final)
    assert _siblings(final) == [staging.name]  # the killed writer's debris is gone
    assert (final / "data.txt").read_text() == "previous"


def test_fingerprint_follows_content_not_path_or_mtime(tmp_path):
    import shutil

    from rerank_plugins._files import directory_fingerprint

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"layers": 6}')
    weights = bytearray(os.urandom(9 << 20))  # above 8 MiB: sampled, not fully hashed
    (model / "model.safetensors").write_bytes(bytes(weights))
    copy = tmp_path / "elsewhere" / "model"
    shutil.copytree(model, copy)
    os.utime(copy / "model.safetensors", (1_000_000, 1_000_000))
    assert directory_fingerprint(copy) == directory_fingerprint(model)  # reinstalled/moved

    middle = len(weights) // 2  # inside one of the evenly spaced windows
    weights[middle : middle + 8] = b"retrain!"
    (copy / "model.safetensors").write_bytes(bytes(weights))
    assert directory_fingerprint(copy) != directory_fingerprint(model)
    (copy / "model.safetensors").write_bytes(bytes(weights[:-1]))  # size alone changes it
    assert directory_fingerprint(copy) != directory_fingerprint(model)
