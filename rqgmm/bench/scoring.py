"""A CTR run's test scoring, scikit-learn's against ours, side by side: ``python -m rqgmm.bench.scoring``.

Each ``evaluate`` CTR run scores its test rows and four popularity slices (AUC and log-loss). This script
draws ``--rows`` labels and float32 probabilities and slice masks of the sizes of the 5M-row planted log's
test part (20% cold, 7% tail, 10% torso, 63% head), then times, alternately and ``--repeat`` times each,
scikit-learn's ``roc_auc_score`` + ``log_loss`` with ``np.unique`` label checks (the scoring before 24dc09e)
and :func:`rqgmm.ctr.train.score` on ``--device``, and prints one JSON object: the fastest seconds of each,
their ratio, and the largest relative difference between the two sets of metrics.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score

from rqgmm.ctr.train import score
from rqgmm.runtime.device import resolve_device

SLICE_SHARES = (0.20, 0.07, 0.10, 0.63)


def sklearn_scoring(y: np.ndarray, p: np.ndarray, masks: list[np.ndarray]) -> list[float]:
    """AUC and log-loss of all rows then of each slice, as scikit-learn gives them."""
    out = [roc_auc_score(y, p), log_loss(y, p, labels=[0, 1])]
    for mask in masks:
        np.unique(y[mask])
        out += [roc_auc_score(y[mask], p[mask]), log_loss(y[mask], p[mask], labels=[0, 1])]
    return out


def our_scoring(y: torch.Tensor, p: torch.Tensor, masks: list[torch.Tensor]) -> list[float]:
    """The same metrics by :func:`~rqgmm.ctr.train.score`, where the tensors are."""
    out = list(score(y, p).values())
    for mask in masks:
        int(torch.count_nonzero(y[mask]))
        out += list(score(y[mask], p[mask]).values())
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m rqgmm.bench.scoring", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="test rows (default 500000)")
    parser.add_argument("--device", default="cpu", help="where ours scores (default cpu)")
    parser.add_argument("--repeat", type=int, default=3, help="timings of each, the fastest kept (default 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: what an evaluate CTR run scores with, TrainConfig.num_threads)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, args.rows), rng.random(args.rows).astype(np.float32).astype(np.float64)
    slice_of = rng.choice(len(SLICE_SHARES), args.rows, p=SLICE_SHARES)
    masks = [slice_of == s for s in range(len(SLICE_SHARES))]
    device = resolve_device(args.device)
    yt, pt = torch.as_tensor(y, device=device), torch.as_tensor(p, device=device)
    masks_t = [torch.as_tensor(m, device=device) for m in masks]
    seconds = {"sklearn": [], "ours": []}
    for _ in range(args.repeat):
        for name, work in (("sklearn", lambda: sklearn_scoring(y, p, masks)),
                           ("ours", lambda: our_scoring(yt, pt, masks_t))):
            start = time.perf_counter()
            work()
            seconds[name].append(time.perf_counter() - start)
    theirs, ours = np.array(sklearn_scoring(y, p, masks)), np.array(our_scoring(yt, pt, masks_t))
    result = dict(rows=args.rows, device=str(device), torch_threads=torch.get_num_threads(),
                  sklearn_s=round(min(seconds["sklearn"]), 4), ours_s=round(min(seconds["ours"]), 4),
                  max_relative_difference=float(np.max(np.abs(theirs - ours) / np.abs(theirs))))
    result["ratio"] = round(result["sklearn_s"] / result["ours_s"], 2)
    print(json.dumps(result))  # a measurement script's one line
    return result


if __name__ == "__main__":
    main()
