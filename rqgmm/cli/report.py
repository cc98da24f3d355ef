"""The verb ``report``: quality metrics of a codes table (or, given a store, the report of its generation).

Its parser is built without torch; the work is in :mod:`rqgmm.cli.report_run`.
"""

from __future__ import annotations

import argparse

from rqgmm.cli import store
from rqgmm.cli.verbs import VERBS


def register(sub) -> None:
    """Add ``report`` to the verbs."""
    rep = sub.add_parser("report", help=VERBS["report"].help)
    rep.add_argument("emb", help="embeddings the codes were made from; or a store directory written by `rqgmm publish`")
    rep.add_argument("codes", nargs="?", default=None, help="codes table written by `rqgmm encode` (not with a store)")
    rep.add_argument("--model", help="model directory: gives K and the reconstruction for rmse")
    rep.add_argument("--against", metavar="OLD_CODES", default=None,
                     help="codes of an earlier model: add the churn and adjusted Rand index of CODES against them")
    rep.add_argument("--embedding", action="append", default=None, metavar="COL",
                     help="parquet embedding column(s) (default: the model's, else 'embedding')")
    rep.add_argument("--json", action="store_true", help="print one JSON object")
    rep.add_argument("--quiet", action="store_true")
    store.add_report_options(rep)
    rep.set_defaults(run=cmd_report)


def cmd_report(args: argparse.Namespace) -> None:
    store_dir = store.store_path(args.emb)
    if store_dir is not None:
        return store.cmd_report_store(args, store_dir)
    from rqgmm.cli.report_run import run_report

    run_report(args)
