"""Generative retrieval over item IDs (``rqgmm evaluate --task retrieval``): leave-one-out sequences, a
decoder-only next-item model, trie-constrained beam search, item-level metrics with the collision correction."""

from .metrics import IdGroups, ranks, recall_ndcg
from .sequences import Sequences, build_sequences
from .train import FULL, QUICK, RetrievalConfig, fit_retriever
from .vocab import ItemTokens

__all__ = ["FULL", "QUICK", "IdGroups", "ItemTokens", "RetrievalConfig", "Sequences", "build_sequences",
           "fit_retriever", "ranks", "recall_ndcg"]
