"""``rqgmm benchmark``: ``rqgmm evaluate`` on the built-in MovieLens configurations.

Per dataset: item text → embeddings (cached on disk) → the same evaluation as
``rqgmm evaluate`` with the user fields as categorical fields of the rows, the
genres as the item bag field (withheld in the "content only" regime) and the
item text embedding as the content. Outputs keep their names: ``results.json``,
``report.md`` and PNG plots.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from rqgmm.ctr.models import BACKBONES
from rqgmm.data import DATASETS, load_dataset, subsample
from rqgmm.data.movielens import item_vectors
from rqgmm.errors import InputError
from rqgmm.evaluate.run import Evaluation
from rqgmm.evaluate.command import describe, echo_verdict
from rqgmm.evaluate.config import EvaluateConfig, config_from
from rqgmm.evaluate.inputs import check_inputs
from rqgmm.evaluate.report import write_outputs

logger = logging.getLogger(__name__)

QUICK = dict(backbones=next(iter(BACKBONES)), seeds=1, quick=True)  # the registry's first backbone (FNN)
#: The full study's tokenizers: RQ-GMM and RQ-KMeans, plain and with balanced codes.
FULL_METHODS = "rqgmm,rqkmeans,rqgmm+balanced,rqkmeans+balanced"


def movielens_tables(name: str, embedder: str, max_items: int | None) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Interaction rows (user fields joined on), items with their text embedding, and the user field names."""
    dataset = load_dataset(name)
    if max_items:
        dataset = subsample(dataset, max_items, seed=0)
    vectors = item_vectors(dataset, embedder)
    fields = dataset.user_fields
    rows = dataset.interactions.merge(dataset.users[["user_id", *fields]], on="user_id", how="left")
    items = dataset.items[["item_id", "genres"]].assign(embedding=list(vectors))
    return rows, items, fields


def benchmark_config(args: argparse.Namespace, user_fields: list[str]) -> EvaluateConfig:
    """The evaluate options of one MovieLens dataset."""
    options = dict(categorical=user_fields, bag="genres", embedding=["embedding"], device=args.device)
    if args.quick:
        options.update(QUICK)
    else:
        options.update(methods=FULL_METHODS)
    if args.seeds is not None:
        options["seeds"] = args.seeds
    return config_from(options)


def run_benchmark(args: argparse.Namespace) -> None:
    """``rqgmm benchmark``: evaluate each dataset, then write one report."""
    if args.dataset != "all" and args.dataset not in DATASETS:
        raise InputError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)} or all")
    names = DATASETS if args.dataset == "all" else (args.dataset,)
    start, records, seconds = time.perf_counter(), [], {}
    for name in names:
        began = time.perf_counter()
        rows, items, fields = movielens_tables(name, args.embedder, args.max_items)
        config = benchmark_config(args, fields)
        records += Evaluation(check_inputs(rows, items, config), config, dataset=name,
                              progress=not args.quiet and sys.stderr.isatty()).run()
        seconds[name] = round(time.perf_counter() - began, 1)
        logger.info("%s: done in %.0f s", name, seconds[name])
    command = "rqgmm benchmark" + "".join(f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                          if k in ("dataset", "seeds", "embedder", "max_items") and v is not None)
    meta = dict(command=getattr(args, "typed", None) or command + (" --quick" if args.quick else ""), datasets=list(names), embedder=args.embedder,
                **describe(config, True, len(items)), seconds_per_dataset=seconds,
                elapsed_seconds=round(time.perf_counter() - start, 1))
    written = write_outputs(Path(args.out), records, meta)
    echo_verdict(records)
    logger.info("wrote %d files to %s in %.0f s; read %s", len(written), args.out, meta["elapsed_seconds"],
                Path(args.out) / "report.md")
