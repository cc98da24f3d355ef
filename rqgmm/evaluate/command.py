"""The ``rqgmm evaluate`` verb: options → checked inputs → the evaluation → results.json, report.md, plots."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from ..paths import Output, check_outputs
from .run import SPLIT_RULE, Evaluation
from .config import EvaluateConfig, config_from_args
from .inputs import check_inputs, read_table
from .report import write_outputs

logger = logging.getLogger(__name__)


def describe(config: EvaluateConfig, timed: bool) -> dict:
    """The run's settings as the report header shows them."""
    return dict(split=SPLIT_RULE[timed], tokenize=config.tokenize + (" (each modality L2-normalised, then "
                "concatenated)" if config.tokenize == "fused" else " (one ID stack per embedding column)"),
                embedding=list(config.embedding), methods=list(config.methods),
                ids=f"{config.levels} levels x K={config.codebook_size}", backbones=list(config.backbones),
                variants=list(config.variants), seeds=config.seed_list, quick=config.quick,
                max_epochs=config.train.max_epochs, patience=config.train.patience,
                categorical=list(config.categorical), bag=list(config.bag), numeric=list(config.numeric))


def run_evaluate(args: argparse.Namespace) -> None:
    """``rqgmm evaluate``: every check before any training; outputs written atomically at the end."""
    config = config_from_args(args)
    inputs = [args.interactions, args.items, *([args.config] if args.config else [])]
    check_outputs(inputs, [Output(args.out, "--out", "directory", marker="results.json")])
    data = check_inputs(read_table(args.interactions, "interactions"), read_table(args.items, "items"), config,
                        names=(args.interactions, args.items))
    start = time.perf_counter()
    evaluation = Evaluation(data, config, dataset=Path(args.interactions).stem)
    records = evaluation.run()
    meta = dict(command=shlex.join(["rqgmm", *sys.argv[1:]]) if sys.argv[1:2] == ["evaluate"] else "rqgmm evaluate",
                dataset=evaluation.dataset, datasets=[evaluation.dataset], rows=len(data.interactions),
                items=len(data.items), **describe(config, data.timed), seconds=evaluation.seconds,
                elapsed_seconds=round(time.perf_counter() - start, 1))
    written = write_outputs(Path(args.out), records, meta)
    logger.info("wrote %d files to %s in %.0f s; read %s", len(written), args.out, meta["elapsed_seconds"],
                Path(args.out) / "report.md")
