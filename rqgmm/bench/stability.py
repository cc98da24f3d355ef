"""Published IDs over ten generations of a changing catalogue: ``python -m rqgmm.bench.stability``.

On MovieLens latest-small item texts (MiniLM, 384-d): a seeded pool of the
items, a first catalogue of ``--first`` of them, then ``--generations`` - 1
more, each retiring a seeded 2% of the live items and adding 10% new ones from
the pool. Every generation refits the model warm-started from the last one
(``fit(X, init=old)``, what ``rqgmm fit --warm-start`` does) and publishes the
catalogue into two stores side by side: one with ``--max-per-prefix`` at
``--cap-factor`` (1.5) times the mean load (live items over the prefixes the
model's codes use on the catalogue; never below the last cap, which a store
refuses), and one without a cap. Per generation, measured:

- the share of the parent's items whose full ID is unchanged (target: 1.0);
- whether every full ID of the store is distinct;
- fallbacks against new items in the capped store (target: < 1%);
- the RMSE of the new items' reconstructions from their capped IDs against
  from their uncapped ones (the model's own codes).

Prints one JSON object (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rqgmm.store.allocation import prefix_keys
from rqgmm.data.movielens import item_vectors, load_dataset
from rqgmm.store.generations import Store
from rqgmm.refit.lineage import fingerprint_of
from rqgmm.store.publish import PublishConfig, publish
from rqgmm.tokenizers.residual import RQGMM, RQKMeans

logger = logging.getLogger(__name__)
METHODS = {"rqgmm": RQGMM, "rqkmeans": RQKMeans}


def catalogues(n_pool: int, first: int, generations: int, add: float, remove: float, seed: int = 0):
    """Item rows (into the pool) of each generation's catalogue: seeded removals and additions."""
    rng = np.random.default_rng(seed)
    pool = rng.permutation(n_pool)
    live, used = list(pool[:first]), first
    out = [np.array(live)]
    for _ in range(generations - 1):
        live = np.array(live)
        live = live[np.sort(rng.choice(len(live), len(live) - int(round(remove * len(live))), replace=False))]
        n_new = int(round(add * len(out[-1])))
        if used + n_new > n_pool:
            raise SystemExit(f"the pool of {n_pool} items runs out; lower --first")
        live = [*live.tolist(), *pool[used : used + n_new].tolist()]
        used += n_new
        out.append(np.array(live))
    return out


def _rmse(model, X: np.ndarray, codes: np.ndarray) -> float:
    return float(np.sqrt(((X - np.asarray(model.decode(codes))) ** 2).sum(1).mean())) if len(codes) else 0.0


def _distinct(gen) -> bool:
    ids = gen.full_ids()
    return len(np.unique(ids, axis=0)) == len(ids)


def _kept(parent, gen) -> float:
    """Share of the parent's items whose full ID is the same in gen."""
    where = {item: row for row, item in enumerate(gen.item_ids.tolist())}
    rows = np.array([where[item] for item in parent.item_ids.tolist()])
    return float((parent.full_ids() == gen.full_ids()[rows]).all(1).mean())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rqgmm.bench.stability", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-small")
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--method", choices=sorted(METHODS), default="rqgmm")
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--codebook-size", type=int, default=128)
    parser.add_argument("--first", type=int, default=4000)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--cap-factor", type=float, default=1.5)
    parser.add_argument("--out", default=None)
    return parser


def _summary(generations: list[dict]) -> dict:
    """The figures across generations: the least share of items keeping their full ID, fallbacks, new items' rmse."""
    later = generations[1:]
    return {
        "kept_full_id_min": min(r[s]["kept_full_id"] for r in later for s in ("capped", "uncapped")),
        "all_distinct": all(r[s]["distinct_full_ids"] for r in generations for s in ("capped", "uncapped")),
        "fallback_share_first": generations[0]["capped"]["fallback_share"],
        "fallback_share_later": sum(r["capped"]["fallbacks"] for r in later) / max(1, sum(r["capped"]["new"]
                                                                                         for r in later)),
        "rmse_new_capped": float(np.mean([r["capped"]["rmse_new"] for r in later])),
        "rmse_new_uncapped": float(np.mean([r["uncapped"]["rmse_new"] for r in later])),
    }


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dataset = load_dataset(args.dataset)
    X = item_vectors(dataset, args.embedder)
    item_ids = np.asarray(dataset.items["item_id"]) if "item_id" in dataset.items else np.arange(len(X))
    cls = METHODS[args.method]
    rows = catalogues(len(X), args.first, args.generations, 0.10, 0.02)
    result = {"dataset": args.dataset, "method": args.method, "levels": args.levels, "k": args.codebook_size,
              "pool": len(X), "generations": []}
    model, cap, parents = None, None, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for g, catalogue in enumerate(rows, start=1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = cls(levels=args.levels, codebook_size=args.codebook_size, random_state=0,
                            progress=False).fit(X[catalogue], init=model)
            path = tmp / f"catalogue-{g}.parquet"
            pq.write_table(pa.table({"item_id": item_ids[catalogue], "embedding": list(X[catalogue])}), path)
            own = np.asarray(model.encode(X[catalogue]))
            mean_load = len(catalogue) / len(np.unique(prefix_keys(own, model.codebook_sizes)))
            cap = max(math.ceil(args.cap_factor * mean_load), cap or 0)
            record = {"generation": g, "catalogue": len(catalogue), "mean_load": mean_load, "cap": cap}
            for name, config in (("capped", PublishConfig(max_per_prefix=cap)), ("uncapped", PublishConfig())):
                entry = publish(tmp / name, model, fingerprint_of(model), path, config)
                gen = Store.open(tmp / name).read()
                new = gen.born == g
                pos = {item: i for i, item in enumerate(item_ids[catalogue].tolist())}
                x_new = X[catalogue][[pos[item] for item in gen.item_ids[new].tolist()]]
                record[name] = {"new": entry["counts"]["new"], "fallbacks": entry["counts"]["fallbacks"],
                                "fallback_share": entry["counts"]["fallbacks"] / max(1, entry["counts"]["new"]),
                                "kept_full_id": _kept(parents[name], gen) if name in parents else None,
                                "distinct_full_ids": _distinct(gen), "live": entry["counts"]["live"],
                                "retired": entry["counts"]["retired"], "rmse_new": _rmse(model, x_new, gen.codes[new])}
                parents[name] = gen
            logger.info("generation %d: %s", g, json.dumps(record))
            result["generations"].append(record)
    result["summary"] = _summary(result["generations"])
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
