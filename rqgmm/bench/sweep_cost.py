"""The fit cost of a sweep over levels against its deepest fit alone: ``python -m rqgmm.bench.sweep_cost``.

``rqgmm evaluate --levels 2,3`` fits the deepest residual stack once per (method, K, seed) and cuts the
shallower shapes from it (:class:`rqgmm.evaluate.tokenizer_stage.SharedFits`). This script times, on
planted item vectors (``--rows`` x ``--dim``, ``--topics`` Gaussian clusters), each method's

- deepest fit alone: :func:`~rqgmm.evaluate.tokenizer_stage.fit_tokenizer` at the deepest shape
  (fit, encode, metrics: what a one-shape ``evaluate`` pays);
- sweep: every shape of ``--levels`` through ``SharedFits``, as ``evaluate`` runs them;
- with ``--unshared``, every shape fitted on its own (the cost before the fits were shared);

and prints one JSON object with the ratio sweep / deepest (issue 26's target: <= 1.2 at 1M x 96, K=256,
2 and 3 levels, on a GPU), and for each side the seconds of its fastest run by part
(:func:`~rqgmm.evaluate.tokenizer_stage.measured_parts`: fit, encode, reconstruction, vectors, codes table,
id metrics; ``other`` is the rest). A small fit first warms the device up, so neither side pays its start.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import numpy as np

from rqgmm.evaluate.config import config_from
from rqgmm.evaluate.tokenizer_stage import ItemVectors, SharedFits, fit_tokenizer, measured_parts

logger = logging.getLogger(__name__)


def planted_vectors(rows: int, dim: int, topics: int, seed: int = 0) -> np.ndarray:
    """float32 (rows, dim): ``topics`` Gaussian centres, each row one centre plus noise of a tenth its scale."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, dim)).astype(np.float32)
    X = centres[rng.integers(0, topics, rows)]
    X += 0.1 * rng.normal(size=X.shape).astype(np.float32)
    return X


def _config(method: str, levels: int, size: int, device: str | None):
    return config_from(dict(embedding=["bench"], methods=method, levels=levels, codebook_size=size, device=device))


def _seconds(work, repeat: int) -> tuple[float, dict[str, float]]:
    """The fastest of ``repeat`` runs of ``work()`` (a shared host's noise only ever adds time), and its seconds
    by part."""
    runs = []
    for _ in range(repeat):
        ItemVectors._known.clear()  # every side pays for the facts of X once, as one evaluate does
        start = time.perf_counter()
        with warnings.catch_warnings(), measured_parts() as parts:
            warnings.simplefilter("ignore")  # convergence warnings: the figures are times
            work()
        seconds = time.perf_counter() - start
        runs.append((seconds, {**parts, "other": seconds - sum(parts.values())}))
    seconds, parts = min(runs, key=lambda run: run[0])
    return seconds, {name: round(value, 2) for name, value in parts.items()}


def run_sweep(method: str, X: np.ndarray, levels: list[int], size: int, device: str | None) -> list:
    """Every depth at K = ``size`` as ``evaluate`` fits them: through one fresh :class:`SharedFits`."""
    fits, ids = SharedFits([(depth, size) for depth in levels]), np.arange(len(X))
    return [fits.fit(method, X, ids, _config(method, depth, size, device), seed=0) for depth in levels]


def sweep_cost(method: str, X: np.ndarray, levels: list[int], size: int, device: str | None,
               unshared: bool, repeat: int = 1) -> dict:
    """Seconds of the deepest fit alone, of the shared sweep (and of unshared fits), and their ratio."""
    ids, deepest = np.arange(len(X)), max(levels)
    alone, alone_parts = _seconds(lambda: fit_tokenizer(method, X, ids, _config(method, deepest, size, device),
                                                        seed=0), repeat)
    sweep, sweep_parts = _seconds(lambda: run_sweep(method, X, levels, size, device), repeat)
    result = {"deepest_alone_s": round(alone, 2), "sweep_s": round(sweep, 2), "ratio": round(sweep / alone, 3)}
    if unshared:
        separate, _ = _seconds(lambda: [fit_tokenizer(method, X, ids, _config(method, depth, size, device), seed=0)
                                        for depth in levels], repeat)
        result.update(unshared_s=round(separate, 2), unshared_ratio=round(separate / alone, 3))
    return {**result, "parts": {"deepest_alone": alone_parts, "sweep": sweep_parts}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rqgmm.bench.sweep_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--levels", default="2,3", help="the sweep's depths, comma-separated")
    parser.add_argument("--codebook-size", type=int, default=64)
    parser.add_argument("--methods", default="rqkmeans,rqgmm")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the library's choice)")
    parser.add_argument("--repeat", type=int, default=1, help="time each side this many times, keep the fastest")
    parser.add_argument("--unshared", action="store_true", help="also time every shape fitted on its own")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    X, levels = planted_vectors(args.rows, args.dim, args.topics), [int(v) for v in args.levels.split(",")]
    sweep_cost(args.methods.split(",")[0], X[:2000], [2], 8, args.device, False, 1)  # warm the device up
    result = {"rows": args.rows, "dim": args.dim, "levels": levels, "k": args.codebook_size, "device": args.device}
    for method in args.methods.split(","):
        result[method] = sweep_cost(method, X, levels, args.codebook_size, args.device, args.unshared,
                                    args.repeat)
        logger.info("%s: %s", method, json.dumps(result[method]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
