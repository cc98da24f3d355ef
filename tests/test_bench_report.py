"""report.md tables and PNG plots from benchmark records (rqgmm.bench.tables, rqgmm.bench.plots)."""

import math
import statistics

import numpy as np
import pytest
from scipy import stats

from rqgmm.bench import plots, tables

DATASET = "movielens-100k"
SEEDS = (0, 1, 2)
BACKBONES = ("fnn", "deepfm", "dcnv2")
SPLITS = ("time", "random")
VARIANTS = {"none": None, "embedding": None, "rqgmm": "2x128", "rqkmeans": "2x128"}
AUC_BASE = {"none": 0.700, "embedding": 0.705, "rqgmm": 0.712, "rqkmeans": 0.709}
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


def _ctr_records(rng) -> list[dict]:
    out = []
    for split in SPLITS:
        for tok, setting in VARIANTS.items():
            for b, backbone in enumerate(BACKBONES):
                for seed in SEEDS:
                    rec = _common("ctr", split, tok, setting, backbone, seed) | _metrics(rng, 2, 128)
                    auc = AUC_BASE[tok] + 0.002 * b + 0.01 * seed + float(rng.normal(0, 0.001))
                    rec |= dict(auc=auc, logloss=0.6 - 0.1 * auc, cold_auc=auc - 0.05, cold_logloss=0.65,
                                n_test=20000, n_cold=150, epochs=4)
                    out.append(rec)
    return out


def _sweep_records(rng) -> list[dict]:
    out = []
    for tok in ("rqgmm", "rqkmeans"):
        for k in (32, 64, 128, 256):
            for seed in SEEDS:
                rec = _common("sweep", "time", tok, f"2x{k}", "fnn", seed) | _metrics(rng, 2, k)
                rec |= dict(rmse=0.3 / math.log2(k), auc=0.7 + 0.001 * math.log2(k) + 0.001 * seed)
                out.append(rec)
    return out


def make_records(seed: int = 0) -> list[dict]:
    """One dataset, two splits, four variants, three backbones, three seeds, plus tokenizer and sweep records."""
    rng = np.random.default_rng(seed)
    return _tokenizer_records(rng) + _ctr_records(rng) + _sweep_records(rng)


META = dict(command="rqgmm benchmark --dataset movielens-100k", datasets=[DATASET], seeds=list(SEEDS),
            embedder="all-MiniLM-L6-v2 (384-d)", elapsed_seconds=12.3, split_rule="last 20% by time", quick=False)


def _line(report: str, prefix: str) -> str:
    lines = [line for line in report.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"expected one line starting {prefix!r}, found {lines}"
    return lines[0]


# ----------------------------------------------------------------------------- paired_difference


def test_paired_difference_matches_hand_computation():
    a, b = [0.71, 0.74, 0.69, 0.73], [0.70, 0.72, 0.69, 0.71]
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / math.sqrt(4)
    out = tables.paired_difference(a, b)
    assert out["n"] == 4
    assert out["mean"] == pytest.approx(d.mean())
    assert (out["low"], out["high"]) == pytest.approx((d.mean() - half, d.mean() + half))


def test_paired_difference_pairs_by_seed_not_by_group_means():
    # Seed effects are large and shared by both variants; the per-seed gap is a steady +0.01.
    # Pairing removes the seed effect, so the interval is far narrower than one built from the
    # two groups' own spreads, which a difference of means would have to use.
    seed_effect = np.array([0.0, 0.05, -0.04, 0.08, -0.06])
    a = 0.71 + seed_effect + np.array([0.001, -0.001, 0.0005, 0.0, -0.0005])
    b = 0.70 + seed_effect
    out = tables.paired_difference(a, b)
    d = a - b
    assert out["high"] - out["low"] == pytest.approx(2 * stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5))
    unpaired_se = math.sqrt(a.var(ddof=1) / 5 + b.var(ddof=1) / 5)
    assert out["high"] - out["low"] < 0.05 * (2 * stats.t.ppf(0.975, 4) * unpaired_se)
    assert out["low"] > 0  # the steady gain is detected


def test_paired_difference_single_pair_has_no_interval():
    assert tables.paired_difference([0.7], [0.69]) == {"mean": pytest.approx(0.01), "low": None, "high": None, "n": 1}
    with pytest.raises(ValueError, match="equal length"):
        tables.paired_difference([0.7, 0.71], [0.69])


# ----------------------------------------------------------------------------- render_report


def test_report_lists_every_variant_backbone_and_section():
    report = tables.render_report(make_records(), META)
    for name in (*VARIANTS, *BACKBONES, DATASET, "2x128", "3x256", "time split", "random split"):
        assert name in report
    assert "Codebook-size sweep" in report and "K^L = 16777216 > 1682 items" in report
    assert "rqgmm benchmark --dataset movielens-100k" in report and "all-MiniLM-L6-v2" in report


def test_report_cell_is_mean_and_sample_std_over_seeds():
    records = make_records()
    aucs = [r["auc"] for r in records if r["kind"] == "ctr" and r["split"] == "random"
            and r["tokenizer"] == "rqkmeans" and r["backbone"] == "deepfm"]
    expected = f"{statistics.mean(aucs):.4f} ± {statistics.stdev(aucs):.4f}"
    report = tables.render_report(records, META)
    random_table = report.split("### CTR, random split")[1].split("Cold items")[0]
    row = _line(random_table, "| rqkmeans (2x128) |").split(" | ")
    assert row[3] == expected  # variant, fnn AUC, fnn LogLoss, deepfm AUC


def test_report_paired_difference_cell_matches_hand_computation():
    records = make_records()

    def aucs(tok):
        rows = [r for r in records if r["kind"] == "ctr" and r["split"] == "time" and r["tokenizer"] == tok
                and r["backbone"] == "fnn"]
        return [r["auc"] for r in sorted(rows, key=lambda r: r["seed"])]

    d = np.subtract(aucs("rqgmm"), aucs("rqkmeans"))
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    cell = " ".join(f"{x:+.4f}" for x in (d.mean(), d.mean() - half, d.mean() + half)).replace("-", "−")
    mean, low, high = cell.split()
    report = tables.render_report(records, META)
    time_part = report.split("### CTR, time split")[1].split("### CTR, random split")[0]
    assert f"{mean} [{low}, {high}]" in _line(time_part, "| rqgmm (2x128) − rqkmeans (2x128), all |")


def test_report_states_plainly_whether_semantic_ids_beat_none():
    records = make_records()
    for r in records:  # make `none` the best variant for time / dcnv2 only
        if r["kind"] == "ctr" and r["split"] == "time" and r["backbone"] == "dcnv2" and r["tokenizer"] == "none":
            r["auc"] += 0.05
    report = tables.render_report(records, META)
    assert "does not beat `none`" in _line(report, "- time split, dcnv2:")
    for split in SPLITS:
        for backbone in BACKBONES:
            if (split, backbone) != ("time", "dcnv2"):
                line = _line(report, f"- {split} split, {backbone}:")
                assert "rqgmm (2x128)" in line and " beats `none`" in line and "does not" not in line


@pytest.mark.parametrize("drop", [("rqkmeans", "embedding"), ("rqgmm",), ("none",)])
def test_report_skips_comparisons_with_absent_variants(drop):
    records = [r for r in make_records() if r["tokenizer"] not in drop]
    report = tables.render_report(records, META)
    assert ("rqgmm (2x128) − rqkmeans" in report) == ("rqkmeans" not in drop and "rqgmm" not in drop)
    assert ("rqgmm (2x128) − embedding" in report) == ("embedding" not in drop and "rqgmm" not in drop)
    assert ("`none` (AUC" in report) == ("none" not in drop)


@pytest.mark.parametrize("kinds", [(), ("ctr",), ("tokenizer",), ("sweep",), ("tokenizer", "sweep")])
def test_report_survives_missing_kinds(kinds):
    records = [r for r in make_records() if r["kind"] in kinds]
    report = tables.render_report(records, {})
    assert report.startswith("# rqgmm benchmark report")
    assert ("### CTR" in report) == ("ctr" in kinds)
    assert ("### Tokenizers" in report) == ("tokenizer" in kinds)
    assert ("Codebook-size sweep" in report) == ("sweep" in kinds)


def test_report_handles_single_seed_and_missing_values():
    records = [r for r in make_records() if r["seed"] == 0]
    for r in records:
        if r["kind"] == "ctr":
            r["cold_auc"] = None
        if r["kind"] == "tokenizer" and r["tokenizer"] == "rqkmeans":
            r["rmse"] = r["relative_mse"] = None
    report = tables.render_report(records, META | {"quick": True})
    assert "±" not in report.split("## movielens-100k")[1]
    assert "no AUC (too few rows or a single class)" in report
    assert "(n=1)" in report and "quick" in report


# ----------------------------------------------------------------------------- plots


def test_plot_all_writes_png_files(tmp_path):
    paths = plots.plot_all(make_records(), tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted([
        f"utilization_{DATASET}_2x128.png", f"utilization_{DATASET}_3x256.png", f"em_history_{DATASET}.png",
        f"auc_{DATASET}_time.png", f"auc_{DATASET}_random.png", f"sweep_{DATASET}.png",
    ])
    for path in paths:
        assert path.parent == tmp_path and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_plots_skip_absent_kinds(tmp_path):
    assert plots.plot_all([], tmp_path) == []
    ctr_only = [r for r in make_records() if r["kind"] == "ctr" and r["tokenizer"] != "embedding"]
    names = [p.name for p in plots.plot_all(ctr_only, tmp_path)]
    assert names == [f"auc_{DATASET}_time.png", f"auc_{DATASET}_random.png"]
