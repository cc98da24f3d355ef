"""A/A calibration of the verdict: one configuration entered twice, under two names that differ only in seed.

    python -m rqgmm.bench.calibration [--cases 40] [--seeds 1,2,3] [--users 400] [--rows-per-user 30]
                                      [--trained 0] [--planted-rows 20000]

Whatever the verdict says about such a pair is a false finding. For each
case, every comparison of the two names (backbones x IDs variants x columns)
is one member of the verdict's Holm family; the script prints, per number of
seeds, the share of cases where the verdict calls any difference (the
family-wise false "beats" rate; the target is at most 5%) and the share of the
uncorrected 95% intervals that hold 0 (the coverage).

- **Synthetic cases** (``--cases``): a generated test log (users, items,
  clicks from known logits) and, per (name, seed), predictions that equal the
  true logit plus a per-item estimation error drawn for that run (the noise of
  training) and a per-row error; the verdict's statistics run on them
  unchanged (:func:`rqgmm.evaluate.verdict.comparisons`). Seconds per case.
- **Trained cases** (``--trained N``): N planted click logs
  (:mod:`rqgmm.data.planted`), each evaluated by ``rqgmm evaluate``'s CTR task
  (RQ-KMeans IDs, FNN, quick training) with 2 x seeds seeds; the runs of seeds
  ``S..2S-1`` are renamed to a second tokenizer and the verdict compares the
  two names. Minutes per case on a CPU.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import dataclass

import numpy as np

from rqgmm.evaluate.slices import SLICES
from rqgmm.evaluate.verdict import OVERALL, TestRows, comparisons, outcome

logger = logging.getLogger(__name__)

NAMES = ("a", "b")
BACKBONES = ("fnn", "dcn")
VARIANTS = ("ids", "ids+embedding")


@dataclass(frozen=True)
class Case:
    """The shape of one synthetic A/A case.

    Parameters
    ----------
    users, rows_per_user, items : int
    seeds : int, per name
    training_noise : float, std of a run's per-item error of the logit
    row_noise : float, std of a run's per-row error of the logit
    """

    users: int = 400
    rows_per_user: int = 30
    items: int = 300
    seeds: int = 3
    training_noise: float = 0.3
    row_noise: float = 0.3


def _ctr_record(name: str, variant: str, backbone: str, seed: int, n_test: int) -> dict:
    """A CTR record stub the verdict reads (its AUC is computed from the predictions)."""
    return dict(kind="ctr", dataset="aa", regime="side fields", backbone=backbone, seed=seed, variant=variant,
                tokenizer=name, label=f"{variant} ({name})", auc=0.5, n_test=n_test,
                slices={s: dict(auc=None, n=0) for s in SLICES})  # AUCs come from the predictions


def synthetic_case(case: Case, seed: int) -> tuple[list[dict], TestRows]:
    """CTR records and test rows of one A/A case: both names' runs drawn from the same law.

    Returns
    -------
    records : list of dict, one CTR record per name x variant x backbone x seed
    test : TestRows over users * rows_per_user rows, with every run's predictions (N,) float32
    """
    rng = np.random.default_rng(seed)
    n = case.users * case.rows_per_user
    users = np.repeat(np.arange(case.users), case.rows_per_user)
    items = rng.integers(0, case.items, n)
    logit = rng.normal(0, 0.7, case.users)[users] + rng.normal(0, 1.0, case.items)[items] - 1.0
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    test = TestRows(labels, users, np.full(n, "unsliced"))
    records = []
    for name in NAMES:
        for variant in VARIANTS:
            for backbone in BACKBONES:
                for s in range(case.seeds):
                    error = rng.normal(0, case.training_noise, case.items)[items]
                    predicted = logit + error + rng.normal(0, case.row_noise, n)
                    test.predictions[("side fields", backbone, s, f"{variant} ({name})")] = predicted.astype(
                        np.float32)
                    records.append(_ctr_record(name, variant, backbone, s, n))
    return records, test


def judge(comps: list[dict]) -> dict:
    """One case's A/A outcome: whether any head-to-head comparison was called a difference, and its intervals."""
    heads = [c for c in comps if c.get("rival") and c["column"] == OVERALL]
    called = any(c["covers_training"] and outcome(c) != "no difference shown" for c in heads)
    held = [c["low95"] <= 0 <= c["high95"] for c in heads if c["low95"] is not None]
    return dict(called=called, intervals=len(held), covered=int(sum(held)), family=len(heads))


def synthetic(cases: int, case: Case) -> dict:
    """The A/A outcomes of ``cases`` synthetic cases: false-call rate (family-wise) and interval coverage."""
    outcomes = [judge(comparisons(*synthetic_case(case, seed))) for seed in range(cases)]
    return summarise(outcomes)


def summarise(outcomes: list[dict]) -> dict:
    """The share of cases with a false call, and the share of 95% intervals that hold 0."""
    intervals = sum(o["intervals"] for o in outcomes)
    return dict(cases=len(outcomes), false_calls=sum(o["called"] for o in outcomes),
                false_rate=float(np.mean([o["called"] for o in outcomes])) if outcomes else float("nan"),
                intervals=intervals, coverage=sum(o["covered"] for o in outcomes) / intervals if intervals else None,
                family=max((o["family"] for o in outcomes), default=0))


# ----------------------------------------------------------------------------- trained cases


def trained_case(log_seed: int, seeds: int, rows: int) -> list[dict]:
    """One planted log evaluated with 2 x ``seeds`` seeds of one configuration; seeds >= ``seeds`` renamed."""
    from rqgmm.data.planted import PlantedConfig, write_planted
    from rqgmm.evaluate.config import config_from
    from rqgmm.evaluate.inputs import check_inputs, read_table
    from rqgmm.evaluate.run import Evaluation

    planted = PlantedConfig(rows=rows, items=max(200, rows // 50), users=max(100, rows // 40), topics=8,
                            widths=(16,), seed=log_seed)
    config = config_from(dict(methods="rqkmeans", backbones="fnn", variants="ids", seeds=2 * seeds, quick=True,
                              levels=2, codebook_size=8))
    with tempfile.TemporaryDirectory() as out:
        interactions, items = write_planted(planted, out)
        data = check_inputs(read_table(str(interactions), "interactions"), read_table(str(items), "items"), config)
        evaluation = Evaluation(data, config, dataset="aa", progress=False)
        records = evaluation.run()
    return comparisons(rename(records, evaluation.test, seeds), evaluation.test)


def rename(records: list[dict], test: TestRows, seeds: int) -> list[dict]:
    """The CTR records with seeds ``seeds..2*seeds-1`` renamed to tokenizer ``b`` seeds ``0..seeds-1``."""
    out = []
    for record in (r for r in records if r["kind"] == "ctr"):
        renamed = dict(record, tokenizer=NAMES[record["seed"] >= seeds], seed=record["seed"] % seeds)
        renamed["label"] = f"{record['variant']} ({renamed['tokenizer']})"
        old = (record["regime"], record["backbone"], record["seed"], record["label"])
        test.predictions[(renamed["regime"], renamed["backbone"], renamed["seed"], renamed["label"])] = \
            test.predictions[old]
        out.append(renamed)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rqgmm.bench.calibration", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=40, help="synthetic cases per number of seeds (default 40)")
    parser.add_argument("--seeds", default="1,2,3", help="seeds per name, A,B (default 1,2,3)")
    parser.add_argument("--users", type=int, default=Case.users)
    parser.add_argument("--rows-per-user", type=int, default=Case.rows_per_user)
    parser.add_argument("--trained", type=int, default=0, help="trained cases on planted logs (default 0)")
    parser.add_argument("--planted-rows", type=int, default=20000, help="rows of each planted log (default 20000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print("A/A calibration: one configuration under two names; a call is a false 'beats' (target <= 5%)")
    print("source     seeds  cases  false calls  rate   95% intervals  coverage  family")
    for seeds in (int(s) for s in args.seeds.split(",")):
        row = synthetic(args.cases, Case(users=args.users, rows_per_user=args.rows_per_user, seeds=seeds))
        print(_row("synthetic", seeds, row))
        if args.trained:
            outcomes = [judge(trained_case(log_seed, seeds, args.planted_rows)) for log_seed in range(args.trained)]
            print(_row("trained", seeds, summarise(outcomes)))
    return 0


def _row(source: str, seeds: int, row: dict) -> str:
    coverage = "-" if row["coverage"] is None else f"{row['coverage']:.3f}"
    return (f"{source:<10} {seeds:>5}  {row['cases']:>5}  {row['false_calls']:>11}  {row['false_rate']:.3f}  "
            f"{row['intervals']:>13}  {coverage:>8}  {row['family']:>6}")


if __name__ == "__main__":
    raise SystemExit(main())
