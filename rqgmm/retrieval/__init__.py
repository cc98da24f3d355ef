"""Generative retrieval over item IDs (``rqgmm evaluate --task retrieval``): leave-one-out sequences, a
decoder-only next-item model that generates unique IDs (codes and dedup token), trie-constrained beam search,
TIGER's prefix rule for cold items, the most-popular and content-KNN baselines, item-level metrics (with the
collision correction when the dedup token is not generated).

A library like ``ctr/``: it never imports a tokenizer or names a dataset's column; it may import ``ids/``,
``runtime/`` and :mod:`rqgmm.errors`. The task that runs it lives in :mod:`rqgmm.evaluate`.
"""

from rqgmm.retrieval.metrics import IdGroups, ranks, recall_ndcg
from rqgmm.retrieval.sequences import Sequences, build_sequences
from rqgmm.retrieval.train import FULL, QUICK, RetrievalConfig, fit_retriever
from rqgmm.retrieval.vocab import ItemTokens

__all__ = ["FULL", "QUICK", "IdGroups", "ItemTokens", "RetrievalConfig", "Sequences", "build_sequences",
           "fit_retriever", "ranks", "recall_ndcg"]
