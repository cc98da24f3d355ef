"""Real and planted datasets: MovieLens (loaded from registry packages), planted click logs, splits, text
embedders and the ``embed`` verb's table writer.

May import ``files/``, ``runtime/`` and :mod:`rqgmm.console`; never a tokenizer, ``ctr/`` or ``evaluate/``.
"""

from rqgmm.data.embedders import (
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    assemble_mpnet,
    default_cache_dir,
    embed_items,
    get_embedder,
)
from rqgmm.data.movielens import DATASETS, Dataset, item_text, load_dataset, subsample
from rqgmm.data.splits import Split, cold_items, cold_mask, random_split, time_split

__all__ = [
    "DATASETS",
    "Dataset",
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "Split",
    "assemble_mpnet",
    "cold_items",
    "cold_mask",
    "default_cache_dir",
    "embed_items",
    "get_embedder",
    "item_text",
    "load_dataset",
    "random_split",
    "subsample",
    "time_split",
]
