"""Paired per-seed differences (rqgmm.evaluate.intervals) and the tokenizer plots (rqgmm.evaluate.plots) of the evaluate report."""

import math

import numpy as np
import pytest
from scipy import stats

from rqgmm.evaluate import plots
from rqgmm.evaluate.intervals import seed_difference

DATASET = "movielens-100k"
SEEDS = (0, 1, 2)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(rng, levels: int, k: int) -> dict:
    return dict(
        rmse=float(rng.uniform(0.1, 0.2)), relative_mse=float(rng.uniform(0.3, 0.5)),
        utilization=rng.uniform(0.8, 1.0, levels).tolist(), prefix_utilization=rng.uniform(0.5, 1.0, levels).tolist(),
        gini=rng.uniform(0.1, 0.4, levels).tolist(), perplexity=rng.uniform(50, 120, levels).tolist(),
        collision_rate=float(rng.uniform(0, 0.1)), icr=float(rng.uniform(0.8, 1.0)),
        n_items=1682, levels=levels, codebook_size=[k] * levels,
    )


def _common(kind, split, tokenizer, setting, backbone, seed) -> dict:
    return dict(kind=kind, dataset=DATASET, split=split, tokenizer=tokenizer, setting=setting,
                backbone=backbone, seed=seed, auc=None, logloss=None)


def _tokenizer_records(rng) -> list[dict]:
    out = []
    for tok in ("rqgmm", "rqkmeans"):
        for levels, k in ((2, 128), (3, 256)):
            for seed in SEEDS:
                rec = _common("tokenizer", None, tok, f"{levels}x{k}", None, seed) | _metrics(rng, levels, k)
                rec |= dict(purity=dict(level1=0.5, prefix2=0.6, random=0.3), fit_seconds=1.5,
                            history=[np.cumsum(rng.uniform(0, 1, 8)).tolist() for _ in range(levels)]
                            if tok == "rqgmm" else [[] for _ in range(levels)],
                            capacity_note=f"K^L = {k ** levels} > 1682 items" if levels == 3 else None)
                out.append(rec)
    return out


def test_paired_difference_matches_hand_computation():
    a, b = [0.71, 0.74, 0.69, 0.73], [0.70, 0.72, 0.69, 0.71]
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / math.sqrt(4)
    out = seed_difference(a, b)
    assert out.n == 4 and out.kind == "t"
    assert out.mean == pytest.approx(d.mean())
    assert out.interval(0.05) == pytest.approx((d.mean() - half, d.mean() + half))
    assert out.p_value() == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_paired_difference_pairs_by_seed_not_by_group_means():
    # Seed effects are large and shared by both variants; the per-seed gap is a steady +0.01.
    # Pairing removes the seed effect, so the interval is far narrower than one built from the
    # two groups' own spreads, which a difference of means would have to use.
    seed_effect = np.array([0.0, 0.05, -0.04, 0.08, -0.06])
    a = 0.71 + seed_effect + np.array([0.001, -0.001, 0.0005, 0.0, -0.0005])
    b = 0.70 + seed_effect
    low, high = seed_difference(a, b).interval(0.05)
    d = a - b
    assert high - low == pytest.approx(2 * stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5))
    unpaired_se = math.sqrt(a.var(ddof=1) / 5 + b.var(ddof=1) / 5)
    assert high - low < 0.05 * (2 * stats.t.ppf(0.975, 4) * unpaired_se)
    assert low > 0  # the steady gain is detected


def test_paired_difference_single_pair_has_no_interval():
    one = seed_difference([0.7], [0.69])
    assert one.kind == "none" and one.mean == pytest.approx(0.01) and one.interval() == (None, None)
    with pytest.raises(ValueError, match="equal, non-zero length"):
        seed_difference([0.7, 0.71], [0.69])


# ----------------------------------------------------------------------------- plots


def test_tokenizer_plots_write_png_files(tmp_path):
    records = _tokenizer_records(np.random.default_rng(0))
    paths = plots.plot_utilization(records, tmp_path) + plots.plot_em_history(records, tmp_path)
    assert sorted(p.name for p in paths) == sorted([
        f"utilization_{DATASET}_2x128.png", f"utilization_{DATASET}_3x256.png", f"em_history_{DATASET}.png"])
    for path in paths:
        assert path.parent == tmp_path and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_plots_skip_absent_kinds(tmp_path):
    assert plots.plot_utilization([], tmp_path) == [] and plots.plot_em_history([], tmp_path) == []
    kmeans_only = [r for r in _tokenizer_records(np.random.default_rng(0)) if r["tokenizer"] == "rqkmeans"]
    assert plots.plot_em_history(kmeans_only, tmp_path) == []


def test_settings_are_ordered_by_the_records_fields_not_by_parsing_their_labels():
    """The labels are for readers: "wide" (3 levels of 16) sorts before "narrow" (3 of 256) by the fields the
    records hold, a label whose records hold no sizes after those, a record with no setting last."""
    from rqgmm.evaluate.tables import setting_label, settings_in

    records = [dict(setting="narrow", levels=3, codebook_size=[256] * 3), dict(setting=None),
               dict(setting="wide", levels=3, codebook_size=[16] * 3), dict(setting="hand-written"),
               dict(setting=setting_label(2, 128), levels=2, codebook_size=[128, 128])]
    assert settings_in(records) == ["2x128", "wide", "narrow", "hand-written", None]


def test_no_difference_plot_without_a_baseline_comparison(tmp_path):
    """``--variants ids`` with two tokenizers gives head-to-head comparisons only: nothing to draw, no crash."""
    from rqgmm.evaluate.report import plot_ctr
    head = dict(kind="comparison", dataset="d", regime="side fields", backbone="fnn", tokenizer="rqgmm",
                rival="rqkmeans", variant="ids", label="ids (rqgmm)", baseline="ids (rqkmeans)", column="all",
                mean=0.001, low=-0.002, high=0.004)
    assert plot_ctr([head], tmp_path) == [] and not list(tmp_path.iterdir())
