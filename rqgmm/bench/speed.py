"""Speed study: the same data and iterations, side by side in one run, as ratios.

    python -m rqgmm.bench.speed [--n 100000] [--d 384] [--k 256] [--iters 10] [--device cpu]

- EM: :class:`rqgmm.DiagonalGMM` vs ``sklearn.mixture.GaussianMixture(covariance_type="diag")``,
  both started from the same parameters, time per iteration;
- k-means: :class:`rqgmm.KMeans` vs ``faiss.Kmeans`` (if faiss is installed), time per iteration;
- the matrix-product bound: 8·N·D·K flops per EM iteration (2·N·D·K per Lloyd
  iteration) at the float32 product rate measured here on the same shapes.
Time per iteration is (T(1 + iters) − T(1)) / iters for every contender, so
initialisation (k-means++ seeding, scikit-learn's set-up) cancels out; each T is
the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
import warnings

import numpy as np
import torch

logger = logging.getLogger(__name__)


def median_seconds(fn, repeats: int, sync=lambda: None) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, ``sync()`` called around each (a device's barrier)."""
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_rate(n: int, d: int, k: int, device: str, repeats: int) -> float:
    """Measured float32 flop/s of an (n, d) x (d, k) product on ``device``."""
    X = torch.randn(n, d, device=device)
    W = torch.randn(d, k, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    X @ W
    seconds = median_seconds(lambda: X @ W, repeats, sync)
    return 2.0 * n * d * k / seconds


def per_iteration(fit, iters: int, repeats: int, sync=lambda: None) -> float:
    """Seconds per iteration of ``fit(n_iterations)``, initialisation excluded by differencing."""
    long = median_seconds(lambda: fit(1 + iters), repeats, sync)
    short = median_seconds(lambda: fit(1), repeats, sync)
    return (long - short) / iters


def em_iteration_seconds(X: np.ndarray, k: int, iters: int, device: str, repeats: int) -> dict:
    """Seconds per EM iteration: rqgmm's DiagonalGMM and scikit-learn's GaussianMixture from one start."""
    from sklearn.mixture import GaussianMixture

    from rqgmm import DiagonalGMM

    rng = np.random.default_rng(0)
    means = X[rng.choice(len(X), k, replace=False)]
    start = dict(means_init=means, weights_init=np.full(k, 1.0 / k), precisions_init=np.ones((k, X.shape[1])))
    Xt = torch.from_numpy(X).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = per_iteration(lambda n: DiagonalGMM(k, max_iter=n, tol=0.0, min_component_count=0, progress=False,
                                                   **start).fit(Xt), iters, repeats, sync)
        sk = per_iteration(lambda n: GaussianMixture(k, covariance_type="diag", max_iter=n, tol=0.0,
                                                     **start).fit(X), iters, repeats)
    return {"rqgmm": ours, "sklearn": sk}


def kmeans_iteration_seconds(X: np.ndarray, k: int, iters: int, device: str, repeats: int) -> dict:
    """Seconds per Lloyd iteration: rqgmm's KMeans and faiss.Kmeans (None if faiss is missing)."""
    from rqgmm import KMeans

    Xt = torch.from_numpy(X).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    ours = per_iteration(lambda n: KMeans(k, max_iter=n, tol=0.0, random_state=0, progress=False).fit(Xt),
                         iters, repeats, sync)
    try:
        import faiss
    except ImportError:
        return {"rqgmm": ours, "faiss": None}

    def run_faiss(n):
        faiss.Kmeans(X.shape[1], k, niter=n, seed=0, max_points_per_centroid=len(X)).train(X)

    return {"rqgmm": ours, "faiss": per_iteration(run_faiss, iters, repeats)}


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    X = np.random.default_rng(0).standard_normal((args.n, args.d)).astype(np.float32)
    rate = matmul_rate(args.n, args.d, args.k, args.device, args.repeats)
    em_bound, lloyd_bound = 8.0 * args.n * args.d * args.k / rate, 2.0 * args.n * args.d * args.k / rate
    em = em_iteration_seconds(X, args.k, args.iters, args.device, args.repeats)
    km = kmeans_iteration_seconds(X, args.k, args.iters, args.device, args.repeats)
    lines = [
        f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"device {args.device}; N={args.n} D={args.d} K={args.k}, {args.iters} iterations, median of {args.repeats}",
        f"float32 product rate: {rate / 1e9:.1f} GFLOP/s -> EM bound {em_bound * 1e3:.1f} ms/iter, "
        f"Lloyd bound {lloyd_bound * 1e3:.1f} ms/iter",
        f"EM     rqgmm {em['rqgmm'] * 1e3:8.1f} ms/iter  ({em['rqgmm'] / em_bound:.2f}x bound)",
        f"EM   sklearn {em['sklearn'] * 1e3:8.1f} ms/iter  ({em['sklearn'] / em_bound:.2f}x bound)",
        f"EM   ratio rqgmm / sklearn = {em['rqgmm'] / em['sklearn']:.2f}",
        f"KM     rqgmm {km['rqgmm'] * 1e3:8.1f} ms/iter  ({km['rqgmm'] / lloyd_bound:.2f}x bound)",
    ]
    if km["faiss"] is None:
        lines.append("KM     faiss not installed (pip install faiss-cpu) - no comparison")
    else:
        lines += [f"KM     faiss {km['faiss'] * 1e3:8.1f} ms/iter  ({km['faiss'] / lloyd_bound:.2f}x bound)",
                  f"KM   ratio rqgmm / faiss = {km['rqgmm'] / km['faiss']:.2f}"]
    for line in lines:
        logger.info(line)
    return lines


if __name__ == "__main__":
    main()
