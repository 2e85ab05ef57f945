"""IR metrics and BEIR-format data loading for offline evaluation."""

from .beir import BeirDataset, load_beir
from .metrics import evaluate, mrr_at_k, ndcg_at_k, recall_at_k

__all__ = ["BeirDataset", "evaluate", "load_beir", "mrr_at_k", "ndcg_at_k", "recall_at_k"]
