"""Fixtures of the training tests (the data builder lives in training_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_support import write_beir

pytest.importorskip("sentence_transformers.cross_encoder", reason="needs the [train] extra")


@pytest.fixture()
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "beir")


@pytest.fixture()
def one_thread():
    """Tiny models train several times faster on one thread than on two busy cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
