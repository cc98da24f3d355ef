"""Real datasets (MovieLens, loaded from registry packages), splits and text embedders."""

from .embedders import (
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    assemble_mpnet,
    default_cache_dir,
    embed_items,
    get_embedder,
)
from .movielens import DATASETS, Dataset, item_text, load_dataset, subsample
from .splits import Split, cold_items, cold_mask, random_split, time_split

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
