"""Domain adaptation: fine-tune or distil a cross-encoder on your own labelled queries.

``tune(data, base=..., out=...)`` mines hard negatives with our own first stage
(:class:`~rerank_plugins.hybrid.HybridRetriever`), trains with sentence-transformers'
``CrossEncoderTrainer``, measures the model before and after on a held-out eval split, and
publishes a directory :class:`~rerank_plugins.CrossEncoderReranker` loads, with
``training_report.json`` and a model card. Needs the ``[train]`` extra
(``pip install "rerank-plugins[train]"``); see docs/training.md.
"""

from __future__ import annotations

from .data import TrainingData, TrainingDataError, load_training_data
from .distill import student_layer_ids
from .negatives import MinedQuery, mine_negatives
from .runner import TuneResult, tune
from .train import LOSSES

__all__ = [
    "LOSSES",
    "MinedQuery",
    "TrainingData",
    "TrainingDataError",
    "TuneResult",
    "load_training_data",
    "mine_negatives",
    "student_layer_ids",
    "tune",
]
