"""Generative retrieval over item IDs (``rqgmm evaluate --task retrieval``): leave-one-out sequences, a
decoder-only next-item model, trie-constrained beam search, item-level metrics with the collision correction.

A library like ``ctr/``: it never imports a tokenizer or names a dataset's column; it may import ``ids/``,
``runtime/`` and :mod:`rqgmm.errors`. The task that runs it lives in :mod:`rqgmm.evaluate`.
"""

from rqgmm.retrieval.metrics import IdGroups, ranks, recall_ndcg
from rqgmm.retrieval.sequences import Sequences, build_sequences
from rqgmm.retrieval.train import FULL, QUICK, RetrievalConfig, fit_retriever
from rqgmm.retrieval.vocab import ItemTokens

__all__ = ["FULL", "QUICK", "IdGroups", "ItemTokens", "RetrievalConfig", "Sequences", "build_sequences",
           "fit_retriever", "ranks", "recall_ndcg"]
