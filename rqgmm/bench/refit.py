"""IDs across refits, on real item embeddings: ``python -m rqgmm.bench.refit [--dataset movielens-small]``.

For RQ-KMeans and RQ-GMM (L x K, MiniLM item-text embeddings), side by side in one run:

- two independent fits (seeds 0 and 1): the churn between them, before and after
  aligning the second to the first (:func:`rqgmm.refit.align.align`);
- a warm-started refit after 10% new items: the first fit on a seeded 90% of the
  items, the refit on all of them starting from it (``fit(X, init=old)``);
  the share of the old items keeping their level-1 code and their full ID;
- ``--unique reassign`` at 3 x 256: the collision rate before and after.

Prints one JSON object (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path

import numpy as np

from rqgmm.refit.align import align
from rqgmm.refit.churn import churn
from rqgmm.data.movielens import item_vectors, load_dataset
from rqgmm.ids.metrics import collision_rate
from rqgmm.ids.reassign import collision_free
from rqgmm.tokenizers.residual import RQGMM, RQKMeans

logger = logging.getLogger(__name__)


def _fit(cls, X: np.ndarray, levels: int, k: int, seed: int, init=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and few-distinct warnings: the figures say what happened
        return cls(levels=levels, codebook_size=k, random_state=seed, progress=False).fit(X, init=init)


def independent_refits(cls, X: np.ndarray, levels: int, k: int) -> dict:
    """Seeds 0 and 1 on the same items: churn before and after aligning the second to the first."""
    first, second = _fit(cls, X, levels, k, 0), _fit(cls, X, levels, k, 1)
    old = first.encode(X)
    return {"before": churn(old, second.encode(X)), "aligned": churn(old, align(second, first, X).encode(X))}


def warm_refit(cls, X: np.ndarray, levels: int, k: int, new_share: float = 0.1) -> dict:
    """Fit on a seeded (1 - new_share) of the items, refit on all from it; what the old items keep."""
    rng = np.random.default_rng(0)
    old_rows = np.sort(rng.choice(len(X), int(round((1 - new_share) * len(X))), replace=False))
    old = _fit(cls, X[old_rows], levels, k, 0)
    new = _fit(cls, X, levels, k, 0, init=old)
    before, after = old.encode(X[old_rows]), new.encode(X[old_rows])
    return {"old_items": len(old_rows), "new_items": len(X) - len(old_rows),
            "level1_kept": float((before[:, 0] == after[:, 0]).mean()),
            "full_id_kept": float((before == after).all(1).mean())}


def reassigned_collisions(cls, X: np.ndarray, levels: int, k: int) -> dict:
    """Collision rate of the codes, and after ``--unique reassign`` (plus the items left with a suffix)."""
    model = _fit(cls, X, levels, k, 0)
    codes = model.encode(X)
    fixed, suffix = collision_free(model, X, codes)
    return {"levels": levels, "k": k, "collision_rate": collision_rate(codes),
            "after_reassign": collision_rate(fixed), "items_with_suffix": int((suffix > 0).sum())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rqgmm.bench.refit", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-small")
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--codebook-size", type=int, default=128)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dataset = load_dataset(args.dataset)
    X = item_vectors(dataset, args.embedder)
    result = {"dataset": args.dataset, "n_items": len(X), "d": X.shape[1], "levels": args.levels,
              "k": args.codebook_size}
    for cls in (RQKMeans, RQGMM):
        result[cls.method] = {
            "independent": independent_refits(cls, X, args.levels, args.codebook_size),
            "warm_start_after_10pct_new": warm_refit(cls, X, args.levels, args.codebook_size),
            "reassign_3x256": reassigned_collisions(cls, X, 3, 256),
        }
        logger.info("%s: %s", cls.method, json.dumps(result[cls.method]))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
