"""The verdict's head-to-head comparisons and their intervals over seeds and users: an A/A calibration on
synthetic per-seed predictions (no training), true differences found, one seed never called a win."""

from __future__ import annotations

import numpy as np
import pytest

from rqgmm.bench import calibration
from rqgmm.bench.calibration import Case, synthetic, synthetic_case
from rqgmm.evaluate import verdict
from rqgmm.evaluate.intervals import combine

TINY = Case(users=150, rows_per_user=20, items=120)


def test_aa_calls_at_most_five_percent_and_intervals_cover_zero():
    # 40 A/A cases, 2 seeds per name: the family-wise false "beats" rate and the 95% intervals' coverage
    found = synthetic(40, Case(**{**TINY.__dict__, "seeds": 2}))
    assert found["cases"] == 40 and found["family"] == 4
    assert found["false_rate"] <= 0.05
    assert found["coverage"] >= 0.93


def _worse_b(seeds: int, gap: float = 1.0):
    """A case where name b's runs carry far more per-item error than a's: a truly beats b."""
    records, test = synthetic_case(Case(**{**TINY.__dict__, "seeds": seeds}), 0)
    rng = np.random.default_rng(1)
    for key, predicted in test.predictions.items():
        if key[3].endswith("(b)"):
            test.predictions[key] = predicted + gap * rng.normal(size=len(predicted)).astype(np.float32)
    return records, test


def test_a_true_difference_is_named_with_an_interval_above_zero():
    comps = verdict.comparisons(*_worse_b(3))
    heads = [c for c in comps if c["rival"] and c["column"] == "all"]
    assert heads and all(c["interval"] == "seeds+users" and c["covers_training"] for c in heads)
    assert all(c["low"] > 0 and c["level"] is not None for c in heads)
    assert verdict.head_to_head(heads[0]).startswith("a beats b by +")


def test_one_seed_head_to_head_is_labelled_and_never_a_win():
    comps = verdict.comparisons(*_worse_b(1))
    heads = [c for c in comps if c["rival"]]
    assert heads and all(c["low"] is None and c["p_holm"] is None and not c["covers_training"] for c in heads)
    assert all(c["family"] == len(comps) - len(heads) for c in comps)  # outside the Holm family
    sentence = verdict.head_to_head(heads[0])
    assert "one seed: training noise not covered" in sentence and "beats" not in sentence


def test_seed_spread_widens_the_user_interval():
    shifts = np.random.default_rng(0).normal(0, 0.01, 1000)
    same, spread = combine([0.02, 0.02, 0.02], shifts), combine([0.0, 0.02, 0.04], shifts)
    assert same.kind == spread.kind == "seeds+users" and same.df is None
    assert same.se == pytest.approx(shifts.std(ddof=1))
    assert spread.se == pytest.approx(np.hypot(shifts.std(ddof=1), 0.02 / np.sqrt(3)))
    assert 2 <= spread.df < 1e6 and spread.interval()[0] < same.interval()[0]
    assert combine([0.02], shifts).kind == "bootstrap"


def test_trained_rename_gives_two_names_per_seed():
    records = [dict(kind="ctr", regime="r", backbone="fnn", seed=s, variant="ids", tokenizer="rqkmeans",
                    label="ids (rqkmeans)") for s in range(4)]
    test = verdict.TestRows(np.zeros(2), np.zeros(2), np.zeros(2), {("r", "fnn", s, "ids (rqkmeans)"): s
                                                                    for s in range(4)})
    out = calibration.rename(records, test, 2)
    assert [(r["label"], r["seed"]) for r in out] == [("ids (a)", 0), ("ids (a)", 1), ("ids (b)", 0), ("ids (b)", 1)]
    assert test.predictions[("r", "fnn", 1, "ids (b)")] == 3
