"""Rerankers that share one surface (:class:`BaseReranker`): local, cascaded, remote."""

from __future__ import annotations

from .base import BaseReranker
from .cascade import CascadeReranker

__all__ = ["BaseReranker", "CascadeReranker"]
