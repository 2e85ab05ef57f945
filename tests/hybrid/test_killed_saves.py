"""A save killed with SIGKILL at any moment: the next load finds a whole index, no debris.

Real kills of a child process that saves in a loop (tiny corpus, hashing embedder), bounded:
a few kills, each child capped by a timeout. POSIX only (SIGKILL, flock).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rerank_plugins.hybrid import HybridRetriever

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and flock are POSIX")

ROOT = Path(__file__).resolve().parents[2]
CHILD = r"""
import os, signal, sys
from rp_test_support import HashEmbedder
from rerank_plugins.hybrid import HybridRetriever

path, mode = sys.argv[1], sys.argv[2]
texts = [f"document {i} about topic {i % 13} " + "filler words " * 30 for i in range(300)]
retriever = HybridRetriever.from_texts(texts, embedder=HashEmbedder(), show_progress=False)
if mode == "between-renames":  # die right after the old index was moved aside
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if ".old-" in os.fspath(dst):
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
    retriever.save(path)
else:
    retriever.save(path)
    print("ready", flush=True)  # one whole save is on disk; now get killed mid-save
    while True:
        retriever.save(path)
"""


def _child(path: Path, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _debris(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != "index")


def test_kill_between_the_two_renames_restores_the_old_index(tmp_path, fake_embedder):
    path = tmp_path / "index"
    old = HybridRetriever.from_texts(["the old index"], ids=["old"], embedder=fake_embedder)
    old.save(path)
    child = _child(path, "between-renames")
    assert child.wait(timeout=120) == -signal.SIGKILL
    assert not path.exists() and any(".index.old-" in n for n in _debris(tmp_path))
    loaded = HybridRetriever.load(path, embedder=fake_embedder)
    assert loaded.ids == ["old"]
    assert _debris(tmp_path) == []


def test_random_kills_during_saves_leave_a_loadable_index_and_no_debris(tmp_path):
    from rp_test_support import HashEmbedder

    path = tmp_path / "index"
    rng = random.Random(15)
    for _ in range(2):  # each child pays a Python + torch start-up: keep it to two
        child = _child(path, "loop")
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
        loaded = HybridRetriever.load(path, embedder=HashEmbedder())
        assert len(loaded) == 300
        assert _debris(tmp_path) == []
    HybridRetriever.load(path, embedder=HashEmbedder()).save(path)
    assert _debris(tmp_path) == []
