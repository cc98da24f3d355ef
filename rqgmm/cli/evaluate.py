"""The verbs ``evaluate`` (what semantic IDs are worth on the user's log) and ``benchmark`` (the same on MovieLens).

The study's imports (pandas, matplotlib, the CTR stack) load only when a verb runs.
"""

from __future__ import annotations

import argparse

from rqgmm.console import int_in
from rqgmm.ctr.models import BACKBONES
from rqgmm.files.paths import Output, check_outputs


def register(sub) -> None:
    """Add ``benchmark`` and ``evaluate`` to the verbs."""
    add_benchmark(sub)
    add_evaluate(sub)


def add_benchmark(sub) -> None:
    bench = sub.add_parser("benchmark", help="run the CTR study on real data (tables, plots)")
    bench.add_argument("--dataset", default="movielens-100k",
                       help="movielens-100k (default), movielens-small, or all")
    bench.add_argument("--out", default="results", help="output directory (default ./results)")
    bench.add_argument("--quick", action="store_true", help="FNN only, one seed, at most 4 epochs (every variant runs)")
    bench.add_argument("--device", default="cpu", help="torch device (default cpu)")
    bench.add_argument("--seeds", type=int_in(1), default=None, help="number of seeds (default 3, or 1 with --quick)")
    bench.add_argument("--embedder", default="minilm", help="minilm (384-d, default), mpnet (768-d) or hashing-<dim>")
    bench.add_argument("--max-items", type=int_in(1), default=None, help="subsample this many items (for smoke runs)")
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(run=cmd_benchmark)


def cmd_benchmark(args: argparse.Namespace) -> None:
    check_outputs([], [Output(args.out, "--out", "directory", marker="results.json")])
    from rqgmm.evaluate.study import run_benchmark  # the study's imports are heavy: load them only here

    run_benchmark(args)


def add_evaluate(sub) -> None:
    ev = sub.add_parser("evaluate", help="what semantic IDs are worth in CTR models on your data (report, plots)")
    ev.add_argument("interactions", help="parquet, one row per impression (user, item, 0/1 label, time, fields)")
    ev.add_argument("--items", required=True, help="parquet with the item id and one or more embedding columns")
    ev.add_argument("--out", required=True, help="output directory: results.json, report.md, PNG plots")
    ev.add_argument("--config", help="TOML file with the same keys as the options below (flags win)")
    for flag, text in (("--user", "user id column (default user_id)"), ("--item", "item id column (default item_id)"),
                       ("--label", "0/1 label column (default label)"),
                       ("--time", "time column (default timestamp; absent: random split)"),
                       ("--categorical", "categorical columns of either table, A,B"),
                       ("--bag", "list columns of either table, A,B"), ("--numeric", "numeric columns, A,B"),
                       ("--methods", "tokenizers, A,B (default rqgmm,rqkmeans)"),
                       ("--backbones", f"{','.join(BACKBONES)} (default all)"),
                       ("--variants", "none,embedding,ids,ids+embedding (default all)"),
                       ("--tokenize", "fused (default) or per-modality"), ("--device", "torch device (default cpu)"),
                       ("--task", "ctr (default), retrieval (generative retrieval over the IDs) or both"),
                       ("--sequence", "retrieval: each user's positive rows (default positives) or all rows")):
        ev.add_argument(flag, default=None, help=text)
    ev.add_argument("--embedding", action="append", default=None,
                    help="embedding column of the items table; repeat for several modalities (default embedding)")
    for flag, text in (("--levels", "ID levels L (default 2)"), ("--codebook-size", "K per level (default 128)"),
                       ("--seeds", "number of seeds (default 3; 1 with --quick)")):
        ev.add_argument(flag, type=int_in(1), default=None, help=text)
    ev.add_argument("--quick", action="store_true", help="one seed and at most 4 epochs")
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from rqgmm.evaluate.command import run_evaluate  # heavy imports (pandas, matplotlib): load them only here

    run_evaluate(args)
