"""Side by side with Cornac: its SASRec and TIGER on the project's exact leave-one-out split, one table with ours.

    pip install cornac==3.0.1          # optional dependency (uses the torch already installed)
    python -m rqgmm.bench.retrieval --dataset movielens-100k --out ml/
    rqgmm evaluate ml/interactions.parquet --items ml/items.parquet --task retrieval --quick --out r/
    python -m rqgmm.bench.retrieval_peer ml/ --ours r/

DATA holds ``interactions.parquet`` and ``items.parquet`` as :mod:`rqgmm.bench.retrieval` writes them. The
split is :func:`rqgmm.retrieval.build_sequences`'s (positives, same-timestamp ties by the seeded hash): each
user is one Cornac session, trained on its training items, validated on the sequence through its validation
item and tested on the whole sequence (``mode="last"``: the test item given everything before it), so the
test, validation and training items per user are ours. Cornac's own Recall@10 is reported. TIGER is shrunk to
our quick size (rkmeans 2 x 128 on the same embeddings, 2 + 2 layers at the quick mode's width and heads, a
feed-forward twice the width as in ours, 4 epochs; ``--tiger-epochs`` sets the epochs, e.g. 20 as our quick
mode's budget); SASRec at width 100, 5 epochs. ``--ours``: an
``evaluate --task retrieval`` output whose item-level Recall@10 join the table.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from rqgmm.console import Parser, exit_status, int_in, setup_logging
from rqgmm.errors import InputError
from rqgmm.retrieval.sequences import Sequences, build_sequences
from rqgmm.retrieval.train import QUICK

logger = logging.getLogger("rqgmm.bench.retrieval_peer")

INSTALL = "cornac is not installed: pip install cornac==3.0.1 (an optional dependency of this benchmark)"
#: TIGER at our quick model's size (width, heads, a feed-forward of twice the width, 2 + 2 layers against our 2).
TIGER_QUICK = dict(tokenizer="rkmeans", rqvae_num_levels=2, rqvae_codebook_size=128, d_model=QUICK.model.dim,
                   d_ff=2 * QUICK.model.dim, num_heads=QUICK.model.heads, d_kv=QUICK.model.dim // QUICK.model.heads,
                   num_enc_layers=2, num_dec_layers=2, n_epochs=4, n_beams=20)
SASREC = dict(embedding_dim=100, n_epochs=5)


def import_cornac():
    """The cornac module, or InputError saying how to install it."""
    try:
        import cornac  # noqa: PLC0415 (optional dependency)
    except ImportError as error:
        raise InputError(INSTALL) from error
    return cornac


def load(data: Path) -> tuple[Sequences, np.ndarray, np.ndarray]:
    """The leave-one-out sequences of DATA, the item ids (M,) and their embeddings (M, D)."""
    import pandas as pd  # noqa: PLC0415

    paths = data / "interactions.parquet", data / "items.parquet"
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"expected {', '.join(missing)} (python -m rqgmm.bench.retrieval writes them)")
    rows, items = pd.read_parquet(paths[0]), pd.read_parquet(paths[1])
    item_ids = items["item_id"].to_numpy()
    rows = rows[rows["item_id"].isin(item_ids)]
    users = pd.factorize(rows["user_id"])[0]
    item_rows = pd.Index(item_ids).get_indexer(rows["item_id"])
    seqs = build_sequences(users, item_rows, rows["label"].to_numpy(), rows["timestamp"].to_numpy(), len(item_ids))
    return seqs, item_ids, np.stack(items["embedding"].to_numpy()).astype(np.float32)


def cornac_splits(seqs: Sequences) -> tuple[list, list, list]:
    """(session, item, position) triples: training items; the sequences through the validation item; all."""
    parts = ([], [], [])
    for u in range(seqs.n_users):
        whole = seqs.items[seqs.starts[u]:seqs.starts[u + 1]]
        for part, stop in zip(parts, (len(whole) - 2, len(whole) - 1, len(whole))):
            part += [(str(u), str(i), t) for t, i in enumerate(whole[:stop])]
    return parts


def run_cornac(data: Path, seed: int, tiger_epochs: int = TIGER_QUICK["n_epochs"]) -> dict[str, float]:
    """Cornac's Recall@10 of SASRec and TIGER (``tiger_epochs`` epochs) on DATA's split."""
    cornac = import_cornac()
    from cornac.data import FeatureModality  # noqa: PLC0415
    from cornac.eval_methods import NextItemEvaluation  # noqa: PLC0415
    from cornac.metrics import Recall  # noqa: PLC0415

    seqs, _, vectors = load(data)
    train, valid, test = cornac_splits(seqs)
    feature = FeatureModality(features=vectors, ids=[str(i) for i in range(len(vectors))])
    method = NextItemEvaluation.from_splits(train_data=train, test_data=test, val_data=valid, fmt="SIT",
                                            mode="last", item_feature=feature, seed=seed)
    models = [cornac.models.SASRec(**SASREC, seed=seed),
              cornac.models.TIGER(**TIGER_QUICK | dict(n_epochs=tiger_epochs), seed=seed)]
    found = {}
    for model in models:
        test_result, _ = method.evaluate(model, metrics=[Recall(k=10)], user_based=False)
        found[f"cornac {model.name}"] = float(test_result.metric_avg_results["Recall@10"])
        logger.info("cornac %s: Recall@10 %.4f", model.name, found[f"cornac {model.name}"])
    return found


def ours(out: Path) -> dict[str, list[float]]:
    """Item-level Recall@10 per method over seeds of an ``evaluate --task retrieval`` output."""
    records = json.loads((out / "results.json").read_text())["records"]
    found: dict[str, list[float]] = {}
    for r in records:
        if r.get("kind") == "retrieval":
            found.setdefault(r["ids"], []).append(r["item"]["recall@10"])
    return found


def table(cornac_found: dict[str, float], our_found: dict[str, list[float]]) -> str:
    """One markdown table: method, Recall@10 (mean ± std over seeds), seeds."""
    lines = ["| method | Recall@10 | seeds |", "|---|---|---|"]
    for name, values in our_found.items():
        lines.append(f"| {name} | {np.mean(values):.4f} ± {np.std(values):.4f} | {len(values)} |")
    lines += [f"| {name} | {value:.4f} | 1 |" for name, value in cornac_found.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0, or 2 with one line (no cornac, missing files)."""
    parser = Parser(prog="python -m rqgmm.bench.retrieval_peer", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="directory with interactions.parquet and items.parquet")
    parser.add_argument("--ours", help="an `rqgmm evaluate --task retrieval` --out directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiger-epochs", type=int_in(1, 1000), default=TIGER_QUICK["n_epochs"],
                        help=f"TIGER's epochs (default {TIGER_QUICK['n_epochs']})")

    def run() -> None:
        args = parser.parse_args(argv)  # a bad argument: one line, exit 2
        setup_logging(False)
        import_cornac()  # refused before any work
        found = run_cornac(Path(args.data), args.seed, args.tiger_epochs)
        logger.info("Recall@10 on the project's leave-one-out split\n%s",
                    table(found, ours(Path(args.ours)) if args.ours else {}))

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
