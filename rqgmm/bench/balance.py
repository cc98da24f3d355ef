"""Balanced codes against plain ones, side by side in one run.

    python -m rqgmm.bench.balance [--n 20000] [--d 64] [--levels 2] [--k 64] [--max-cluster-size 1.5]

Fits RQ-KMeans and RQ-GMM on the same skewed synthetic embeddings (cluster
sizes drawn from a Zipf law, so plain codes are far from balanced) with
``balance`` None, "greedy" and "sinkhorn", and prints per variant:
utilization, gini and perplexity per level, collision rate, the share of items
in a shared full ID, the largest code's size over the bound, RMSE and the fit
time (with its ratio to the unbalanced fit of the same method). One chunk holds
all rows, so the bound is exact.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np

from rqgmm.tokenizers.balance import capacity
from rqgmm.ids.metrics import collided_items, report
from rqgmm.tokenizers.residual import RQGMM, RQKMeans

logger = logging.getLogger(__name__)


def skewed_embeddings(n: int, d: int, n_clusters: int, seed: int) -> np.ndarray:
    """X (n, d) float32 from ``n_clusters`` Gaussians with Zipf-distributed sizes."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_clusters + 1)
    labels = rng.choice(n_clusters, n, p=weights / weights.sum())
    centres = rng.normal(0.0, 3.0, (n_clusters, d))
    return (centres[labels] + rng.normal(0.0, 1.0, (n, d))).astype(np.float32)


def run_variant(cls, balance: str | None, X: np.ndarray, args: argparse.Namespace) -> dict:
    """Fit one variant; its metrics, fit seconds and largest level-code count over the bound."""
    model = cls(levels=args.levels, codebook_size=args.k, random_state=args.seed, balance=balance,
                max_cluster_size=args.max_cluster_size, chunk_size=len(X), progress=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    seconds = time.perf_counter() - start
    codes = model.encode(X)
    out = report(codes, model.codebook_sizes, X, model.decode(codes))
    bound = capacity(len(X), args.k, args.max_cluster_size)
    out.update(seconds=seconds, collided=collided_items(codes),
               largest_over_bound=[int(np.bincount(codes[:, l]).max()) / bound for l in range(args.levels)])
    return out


def fmt(values) -> str:
    """Numbers (or lists of them) in 3 significant digits."""
    return " / ".join(f"{v:.3g}" for v in values) if isinstance(values, list) else f"{values:.3g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=200, help="Gaussians in the synthetic data")
    parser.add_argument("--max-cluster-size", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    X = skewed_embeddings(args.n, args.d, args.clusters, args.seed)
    logger.info(f"N={args.n} D={args.d} L={args.levels} K={args.k} max_cluster_size={args.max_cluster_size} "
          f"(bound {capacity(args.n, args.k, args.max_cluster_size)} items per code)")
    logger.info("| method | balance | utilization | gini | perplexity | collision_rate | collided items | "
          "largest code / bound | rmse | fit s (× plain) |")
    logger.info("|---|---|---|---|---|---|---|---|---|---|")
    for cls in (RQKMeans, RQGMM):
        plain = None
        for balance in (None, "greedy", "sinkhorn"):
            r = run_variant(cls, balance, X, args)
            plain = plain or r["seconds"]
            logger.info(f"| {cls.method} | {balance or 'none'} | {fmt(r['utilization'])} | {fmt(r['gini'])} | "
                  f"{fmt(r['perplexity'])} | {r['collision_rate']:.3f} | {r['collided']:.3f} | "
                  f"{fmt(r['largest_over_bound'])} | {r['rmse']:.4g} | {r['seconds']:.1f} "
                  f"({r['seconds'] / plain:.2f}×) |")


if __name__ == "__main__":
    main()
