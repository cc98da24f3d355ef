"""The verbs of the generations store: ``publish``, ``check``, and ``report STORE`` (the options ``report`` adds for it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rqgmm.console import int_in
from rqgmm.errors import InputError
from rqgmm.files.paths import Output, check_outputs
from rqgmm.cli.verbs import VERBS


def register(sub) -> None:
    """Add ``publish`` to the verbs."""
    pub = sub.add_parser("publish", help=VERBS["publish"].help)
    pub.add_argument("model", help="model directory written by `rqgmm fit` (it encodes the new items only)")
    pub.add_argument("emb", help="the whole catalogue: .parquet with item_id and the model's embedding column(s)")
    pub.add_argument("--store", required=True, help="store directory (created by the first publish)")
    pub.add_argument("--max-per-prefix", type=int_in(1), default=None,
                     help="at most this many items per prefix (the L codes); new items of a full prefix go to the "
                          "nearest prefix with room, by the model's distance (counted as fallbacks)")
    pub.add_argument("--reuse-retired", action="store_true",
                     help="new items may take the full IDs of retired items (default: never reused)")
    pub.add_argument("--no-suffix", action="store_true",
                     help="full IDs are the L codes alone (several items may share one); only when creating a store")
    pub.add_argument("--item", default="item_id", metavar="COL", help="the catalogue's item id column (default item_id)")
    pub.add_argument("--embedding", action="append", default=None, metavar="COL",
                     help="the catalogue's embedding column(s), repeatable (default: the model's, else 'embedding')")
    pub.add_argument("--quiet", action="store_true")
    pub.set_defaults(run=cmd_publish)
    chk = sub.add_parser("check", help=VERBS["check"].help)
    chk.add_argument("store", help="store directory written by `rqgmm publish`")
    chk.add_argument("--json", action="store_true", help="print one JSON object")
    chk.add_argument("--quiet", action="store_true")
    chk.set_defaults(run=cmd_check)


def cmd_check(args: argparse.Namespace) -> None:
    """Exit 0 when every file of every generation matches the manifest, else 2 naming the first that differs."""
    from rqgmm.store.generations import MANIFEST, Store

    if not (Path(args.store) / MANIFEST).is_file():
        raise InputError(f"{args.store} holds no {MANIFEST}: not an rqgmm store; pass a directory written by "
                         "`rqgmm publish`")
    store = Store.open(args.store)
    result = {"store": str(store.path), "generations": len(store.generations), **store.verify()}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{store.path}: {result['generations']} generation(s), {len(result['verified'])} file(s) match "
          f"the SHA-256 and size in {MANIFEST}")
    if result["unrecorded"]:
        print(f"{len(result['unrecorded'])} file(s) present but without a checksum (written by an older release; "
              f"the next publish records them): {', '.join(result['unrecorded'])}")


def cmd_publish(args: argparse.Namespace) -> None:
    from rqgmm.refit.lineage import fingerprint_of
    from rqgmm.store.publish import PublishConfig, publish
    from rqgmm.cli.tokenize_run import model_columns
    from rqgmm.tokenizers.base import load

    check_outputs([args.model, args.emb], [Output(args.store, "--store", "workdir")])
    tokenizer = load(args.model)
    columns = model_columns(args, tokenizer)
    config = PublishConfig(args.max_per_prefix, args.reuse_retired, not args.no_suffix, ["rqgmm", *sys.argv[1:]],
                           args.item, tuple(columns) if columns else None)
    entry = publish(args.store, tokenizer, fingerprint_of(tokenizer), args.emb, config)
    if not args.quiet:
        print(json.dumps({"generation": entry["generation"], **entry["counts"]}))


def add_report_options(rep) -> None:
    """The options ``report`` takes for a store."""
    rep.add_argument("--generation", type=int_in(1), default=None,
                     help="with a store: the generation to report (default the current one)")
    rep.add_argument("--interactions", metavar="LOG", default=None,
                     help="a parquet log (one row per interaction): with a store, the head/tail allocation; with "
                          "CODES, per level the co-click lift and the click-rate R², each against random IDs")
    rep.add_argument("--item", default="item_id", help="with --interactions: the log's item column (default item_id)")
    for flag, default, what in (("--user", "user_id", "user column"), ("--label", "label", "0/1 label column"),
                                ("--time", "timestamp", "time column, ordering each user's rows; absent: the "
                                                        "file's order")):
        rep.add_argument(flag, default=None, help=f"with CODES --interactions: the log's {what} (default {default})")


def store_path(path: str) -> str | None:
    """The store directory ``path`` is or holds the generation file of; None when it is neither."""
    from rqgmm.store.generations import MANIFEST

    p = Path(path)
    for candidate in (p, p.parent.parent):
        if candidate.is_dir() and (candidate / MANIFEST).is_file():
            return str(candidate)
    return None


def cmd_report_store(args: argparse.Namespace, store_dir: str) -> None:
    from rqgmm.store.generations import Store, generation_of
    from rqgmm.store.report import store_report

    if args.codes is not None or args.model is not None or args.against is not None:
        raise InputError(f"{args.emb} is a store: report it alone (drop CODES, --model and --against)")
    if any(getattr(args, k) is not None for k in ("user", "label", "time")):
        raise InputError(f"{args.emb} is a store: --user, --label and --time go with a codes table's "
                         "--interactions; the store's head/tail reads the item column (--item) only")
    generation = args.generation if args.generation is not None else generation_of(args.emb)
    result = store_report(Store.open(store_dir), generation, args.interactions, args.item)
    print(json.dumps(result) if args.json else "\n".join(summary(result)))


def summary(r: dict) -> list[str]:
    """The store report as lines a person reads (``--json`` gives every figure)."""
    cap = r["max_per_prefix"] if r["max_per_prefix"] is not None else "none"
    lines = [f"{r['store']}: generation {r['generation']} (parent {r['parent'] or 'none'}), {r['method']} "
             f"{r['levels']} levels of {r['codebook_sizes']}, suffix {'yes' if r['suffix'] else 'no'}, cap {cap}",
             f"items        {r['items']} ({r['live']} live); fallbacks {r['fallbacks']['this_generation']} this "
             f"generation, {r['fallbacks']['live']} live; retired {r['retirements']['this_generation']} this "
             f"generation, {r['retirements']['all']} in all"]
    churn = r["churn"]
    lines.append("churn        none (first generation)" if churn is None else
                 f"churn        {churn['changed_items']} of {churn['parent_items']} parent items changed full ID "
                 f"({churn['full_id_changed']:.2%}), {churn['missing_items']} missing")
    load = r["load"]
    lines.append(f"load         {load['prefixes']} prefixes, mean {load['mean']:.3g}, p99 {load['p99']:.3g}, max "
                 f"{load['max']} (prefix {load['largest_prefix']}); one-to-many IDs {load['one_to_many_ids']}")
    lines.append("fan-out      " + "; ".join(f"depth {f['depth']}: {f['nodes']} nodes, {f['mean_children']:.3g} "
                                             f"children (max {f['max_children']})" for f in r["fanout"]))
    if "head_tail" in r:
        ht = r["head_tail"]
        lines.append(f"head/tail    {ht['head_items']} head items hold {ht['head_interactions_share']:.1%} of "
                     "interactions; " + "; ".join(f"level {lv['level']}: head {lv['head_prefixes']} / tail "
                                                  f"{lv['tail_prefixes']} of {lv['all_prefixes']} prefixes"
                                                  for lv in ht["levels"]))
    return lines
