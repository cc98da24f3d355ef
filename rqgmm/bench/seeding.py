"""Seeding study: plain vs greedy k-means++, side by side with scikit-learn, in one run.

    python -m rqgmm.bench.seeding [--section table,time] [--seeds 50] [--device cpu]
                                  [--n 50000] [--dim 384] [-k 256] [--out results.json]

- ``table``: well-separated Gaussian clusters (3,000 points, centres N(0, 1)·10,
  one scale U(0.3, 1.5) per cluster), three draws of the data for each of two
  shapes (6 clusters in 8 dimensions, 20 in 16). For each draw, the seeds (of
  ``--seeds``) whose fit does not recover the clusters (adjusted Rand index
  < 0.99), for rqgmm's ``KMeans`` and ``DiagonalGMM`` with plain (1 candidate
  per step) and greedy (2 + floor(ln K)) k-means++, and for scikit-learn's
  ``KMeans(n_init=1)`` and ``GaussianMixture(covariance_type="diag")``; and the
  share of seedings that put one centre in every true cluster.
- ``time``: at one shape and device (``--n`` x ``--dim``, ``-k`` components,
  unit vectors around 4,096 centres), seconds of the seeding alone (on the
  256·K-row initialisation sample) and of whole ``KMeans`` and ``DiagonalGMM``
  fits, plain vs greedy, interleaved, with the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from rqgmm.runtime.device import resolve_device
from rqgmm.tokenizers.gmm import DiagonalGMM
from rqgmm.tokenizers.kmeans import KMeans, kmeans_plusplus, n_local_trials
from rqgmm.tokenizers.level import POINTS_PER_CENTRE
from rqgmm.runtime.seeding import cpu_generator
from rqgmm.bench.gpu import unit_vectors

logger = logging.getLogger(__name__)

SHAPES = ((6, 8), (20, 16))  # (clusters, dimensions)
N_POINTS = 3000
ARI_PASS = 0.99
SEEDINGS = {"plain": 1, "greedy": None}  # candidates per step (None: 2 + floor(ln K))


def planted_clusters(k: int, d: int, draw: int) -> tuple[np.ndarray, np.ndarray]:
    """X (3000, d) float64 from k spherical Gaussians (centres N(0, 1)·10, scales U(0.3, 1.5)) and the true labels."""
    rng = np.random.default_rng([k, d, draw])
    centres = rng.normal(size=(k, d)) * 10
    scales = rng.uniform(0.3, 1.5, k)
    labels = np.arange(N_POINTS) % k
    X = centres[labels] + rng.normal(size=(N_POINTS, d)) * scales[labels, None]
    order = rng.permutation(N_POINTS)
    return X[order], labels[order]


def contenders(k: int, seed: int) -> dict:
    """name -> unfitted estimator with ``predict``, for one seed."""
    from sklearn.cluster import KMeans as SKKMeans
    from sklearn.mixture import GaussianMixture

    out = {}
    for seeding, trials in SEEDINGS.items():
        for name, cls in (("KMeans", KMeans), ("DiagonalGMM", DiagonalGMM)):
            estimator = cls(k, random_state=seed, progress=False)
            estimator._seeding_trials = trials
            out[f"rqgmm {name} {seeding}"] = estimator
    out["sklearn KMeans(n_init=1)"] = SKKMeans(k, n_init=1, random_state=seed)
    out["sklearn GaussianMixture(diag)"] = GaussianMixture(k, covariance_type="diag", random_state=seed)
    return out


def covers_every_cluster(X: np.ndarray, labels: np.ndarray, k: int, seed: int, trials: int | None) -> bool:
    """Whether k-means++ (``trials`` candidates per step) puts one centre in each true cluster."""
    centres = kmeans_plusplus(torch.from_numpy(X), k, cpu_generator(seed), trials).numpy()
    nearest = ((X[:, None, :] - centres[None]) ** 2).sum(-1).argmin(0)  # the row each centre sits on
    return len(set(labels[nearest].tolist())) == k


def seeding_table(n_seeds: int) -> dict:
    """Failures (ARI < 0.99) per contender, shape and draw; and the cover rate of each seeding."""
    from sklearn.metrics import adjusted_rand_score

    result = {}
    for k, d in SHAPES:
        shape = f"{k} clusters, {d} dims"
        result[shape] = {"failures": {}, "covers_every_cluster": {s: 0 for s in SEEDINGS}}
        for draw in range(3):
            X, labels = planted_clusters(k, d, draw)
            for seed in range(n_seeds):
                for name, estimator in contenders(k, seed).items():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        predicted = np.asarray(estimator.fit(X).predict(X))
                    failed = adjusted_rand_score(labels, predicted) < ARI_PASS
                    result[shape]["failures"].setdefault(name, [0, 0, 0])[draw] += int(failed)
                for seeding, trials in SEEDINGS.items():
                    result[shape]["covers_every_cluster"][seeding] += covers_every_cluster(X, labels, k, seed, trials)
        for seeding in SEEDINGS:
            result[shape]["covers_every_cluster"][seeding] /= 3 * n_seeds
        logger.info("%s: %s", shape, json.dumps(result[shape]))
    return result


def table_lines(result: dict) -> list[str]:
    """The failure table as markdown: one row per contender, one column per shape (three draws)."""
    shapes = list(result)
    lines = ["| contender | " + " | ".join(shapes) + " |", "|---|" + "---|" * len(shapes)]
    for name in result[shapes[0]]["failures"]:
        cells = [", ".join(str(v) for v in result[s]["failures"][name]) for s in shapes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for seeding in SEEDINGS:
        cells = [f"{result[s]['covers_every_cluster'][seeding]:.0%}" for s in shapes]
        lines.append(f"| one {seeding} k-means++ centre in every cluster | " + " | ".join(cells) + " |")
    return lines


def seconds(fn, device: torch.device) -> float:
    """Wall time of one call of ``fn``, the device synchronised around it."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def timing(n: int, dim: int, k: int, device: torch.device, repeats: int, max_iter: int | None) -> dict:
    """Seeding and whole-fit seconds, plain vs greedy, interleaved; medians over ``repeats``."""
    X = unit_vectors(n, dim, 4096, 0, str(device))
    sample = X[: POINTS_PER_CENTRE * k]
    times: dict[str, list[float]] = {}
    iterations: dict[str, int] = {}
    for _ in range(repeats):
        for seeding, trials in SEEDINGS.items():
            times.setdefault(f"seeding {seeding}", []).append(
                seconds(lambda: kmeans_plusplus(sample, k, cpu_generator(0), trials), device))
            for name, cls in (("KMeans", KMeans), ("DiagonalGMM", DiagonalGMM)):
                extra = {} if max_iter is None else {"max_iter": max_iter}
                estimator = cls(k, random_state=0, progress=False, device=str(device), **extra)
                estimator._seeding_trials = trials
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    times.setdefault(f"{name} fit {seeding}", []).append(seconds(lambda: estimator.fit(X), device))
                iterations[f"{name} fit {seeding}"] = estimator.n_iter_
    median = {key: float(np.median(v)) for key, v in times.items()}
    ratios = {key.replace(" greedy", ""): median[key] / median[key.replace("greedy", "plain")]
              for key in median if key.endswith("greedy")}
    return {"n": n, "dim": dim, "k": k, "device": str(device), "trials": n_local_trials(k), "repeats": repeats,
            "seconds": median, "greedy / plain": ratios, "iterations": iterations,
            "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m rqgmm.bench.seeding", description=__doc__.splitlines()[0])
    parser.add_argument("--section", default="table,time", help="table, time, or both (comma-separated)")
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("-k", type=int, default=256)
    parser.add_argument("--max-iter", type=int, default=None, help="fit iterations (default: each level's own)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sections, result = args.section.split(","), {}
    if "table" in sections:
        result["table"] = seeding_table(args.seeds)
        for line in table_lines(result["table"]):
            logger.info(line)
    if "time" in sections:
        result["time"] = timing(args.n, args.dim, args.k, resolve_device(args.device, what="--device"),
                                args.repeats, args.max_iter)
        logger.info("%s", json.dumps(result["time"], indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
