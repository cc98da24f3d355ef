"""CTR quality parity: test AUC per variant of one trainer, on the MovieLens studies, to compare two checkouts.

    python -m rqgmm.bench.parity --dataset movielens-100k --out new-100k.json
    PYTHONPATH=/tmp/old python rqgmm/bench/parity.py --dataset movielens-100k --out old-100k.json
    python -m rqgmm.bench.parity --compare old-100k.json new-100k.json

It runs ``rqgmm evaluate``'s evaluation (FNN, RQ-GMM and RQ-KMeans at 2 x 128,
the four variants, both regimes, ``--seeds`` seeds) with the checkout's own
default ``TrainConfig`` and writes each CTR record's test AUC. The script uses
only interfaces that existed before the device trainer (the study's tables,
``config_from``, ``check_inputs``, ``Evaluation``), so the same file runs
against an older checkout put first on ``PYTHONPATH``: the tokenizers, the
split and the data are then the same and only the trainer differs.
``--compare`` prints the mean test AUC per regime and variant of both files and
their difference.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def run(dataset: str, seeds: int, embedder: str, backbone: str) -> list[dict]:
    """The CTR records (regime, label, seed, auc, epochs, seconds) of one evaluation."""
    from rqgmm.evaluate.config import config_from
    from rqgmm.evaluate.inputs import check_inputs
    from rqgmm.evaluate.run import Evaluation
    from rqgmm.evaluate.study import movielens_tables

    rows, items, fields = movielens_tables(dataset, embedder, None)
    config = config_from(dict(categorical=fields, bag="genres", embedding=["embedding"], backbones=backbone,
                              methods="rqgmm,rqkmeans", seeds=seeds))
    evaluation = Evaluation(check_inputs(rows, items, config), config, dataset=dataset)
    records = evaluation.run()
    logger.info("%s: %s", dataset, evaluation.seconds)
    return [dict(regime=r["regime"], label=r["label"], seed=r["seed"], auc=r["auc"], epochs=r["epochs"])
            for r in records if r["kind"] == "ctr"] + [dict(seconds=evaluation.seconds, train=repr(config.train))]


def means(records: list[dict]) -> dict[tuple[str, str], tuple[float, int]]:
    """Mean test AUC and number of seeds per (regime, variant label)."""
    groups = defaultdict(list)
    for r in records:
        if "auc" in r:
            groups[(r["regime"], r["label"])].append(r["auc"])
    return {key: (float(np.mean(v)), len(v)) for key, v in groups.items()}


def compare(old_path: str, new_path: str) -> list[str]:
    """A markdown table: per regime and variant, old and new mean AUC and new − old."""
    old, new = (json.loads(Path(p).read_text()) for p in (old_path, new_path))
    a, b = means(old["records"]), means(new["records"])
    lines = [f"old: {old['meta']}", f"new: {new['meta']}", "",
             "| regime | variant | old AUC | new AUC | new − old |", "|---|---|---|---|---|"]
    for key in sorted(a.keys() & b.keys()):
        lines.append(f"| {key[0]} | {key[1]} | {a[key][0]:.4f} | {b[key][0]:.4f} | {b[key][0] - a[key][0]:+.4f} |")
    worst = max(abs(b[k][0] - a[k][0]) for k in a.keys() & b.keys())
    lines.append(f"largest |new − old|: {worst:.4f} (seeds per mean: {sorted({v[1] for v in a.values()})})")
    return lines


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--backbone", default="fnn")
    parser.add_argument("--out")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.compare:
        lines = compare(*args.compare)
    else:
        records = run(args.dataset, args.seeds, args.embedder, args.backbone)
        meta = dict(dataset=args.dataset, seeds=args.seeds, backbone=args.backbone, **records.pop())
        Path(args.out).write_text(json.dumps(dict(meta=meta, records=records)))
        lines = [json.dumps(meta)] + [f"{k}: {v[0]:.4f} (n={v[1]})" for k, v in sorted(means(records).items())]
    for line in lines:
        logger.info("%s", line)
    return lines


if __name__ == "__main__":
    main()
