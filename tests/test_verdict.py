"""The verdict of `rqgmm evaluate`: Holm's correction, the bootstrap over test users, the interval kinds,
the words, and the warnings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from rqgmm.evaluate import caveats, plots, verdict
from rqgmm.evaluate.intervals import POISSON_CDF, UserBootstrap, auc_influence, bootstrap_differences, poisson_weights
from rqgmm.evaluate.slices import SLICES
from rqgmm.evaluate.tables import holm


# ----------------------------------------------------------------------------- Holm


def test_holm_matches_a_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> max with 0.06)
    adjusted, levels = holm(p, alpha=0.05)
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # steps: 0.005 <= 0.05/4 reject; 0.01 <= 0.05/3 reject; 0.03 > 0.05/2 stop: it and the rest at 0.025
    assert levels.tolist() == pytest.approx([0.05 / 3, 0.025, 0.025, 0.0125])


@pytest.mark.parametrize("seed", range(5))
def test_holm_level_intervals_agree_with_adjusted_p_values(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.05, 12) ** rng.uniform(0.5, 2, 12)
    adjusted, levels = holm(p, alpha=0.05)
    # a test dual to its interval excludes 0 at its Holm level exactly when Holm rejects it
    assert ((p <= levels) == (adjusted <= 0.05)).all()


# ----------------------------------------------------------------------------- bootstrap


def test_auc_influence_gives_sklearn_auc_with_ties():
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 300), rng.integers(0, 7, 300).astype(float)
    auc, psi = auc_influence(labels, scores)
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    # the first-order expansion predicts a reweighted AUC: weight 1 + eps on one row
    i, eps = 5, 1e-4
    weights = np.ones(300)
    weights[i] += eps
    reweighted = roc_auc_score(labels, scores, sample_weight=weights)
    assert (reweighted - auc) == pytest.approx(eps * psi[i], rel=1e-2, abs=1e-9)


def test_poisson_weights_equal_the_exact_inversion_on_every_cdf_boundary():
    rng = np.random.default_rng(0)
    edges = np.concatenate([POISSON_CDF, np.nextafter(POISSON_CDF, 0), np.nextafter(POISSON_CDF, 1)])
    uniform = np.concatenate([rng.random(200_000, dtype=np.float32), edges[edges < 1].astype(np.float32), [0.0]])
    uniform = uniform.astype(np.float32)
    kept = uniform.copy()
    weights = poisson_weights(uniform)
    assert weights.dtype == np.float32 and np.array_equal(uniform, kept)
    assert np.array_equal(weights, np.searchsorted(POISSON_CDF, uniform).astype(np.float32) - 1)


def test_influences_of_one_sort_equal_each_column_sorted_alone():
    rng = np.random.default_rng(3)
    n = 4000
    labels, user = rng.integers(0, 2, n), rng.integers(0, 300, n)
    scores = np.round(labels * 0.5 + rng.normal(size=n), 1).astype(np.float32)  # many ties
    columns = {"all": np.ones(n, bool), "some": rng.random(n) < 0.3, "rest": rng.random(n) < 0.6}
    boot = UserBootstrap(labels, user)
    kept = scores.copy()
    found = boot.influences(scores, columns)
    assert np.array_equal(scores, kept)
    for name, rows in columns.items():
        auc, psi = auc_influence(labels[rows], scores[rows])  # the reference: the column's rows sorted alone
        assert found[name][0] == auc == pytest.approx(roc_auc_score(labels[rows], scores[rows]), abs=1e-12)
        assert np.array_equal(found[name][1], np.bincount(boot.user_rows[rows], psi, minlength=300)
                              .astype(np.float32))


def test_shifts_in_blocks_of_resamples_equal_one_draw_of_all_weights():
    rng = np.random.default_rng(4)
    boot = UserBootstrap(np.zeros(500), np.arange(500), resamples=600, seed=9)  # one row per user
    influences = rng.normal(size=(500, 3)).astype(np.float32)
    uniform = np.random.default_rng(9).random((600, 500), dtype=np.float32)
    reference = (np.searchsorted(POISSON_CDF, uniform).astype(np.float32) - 1) @ influences
    np.testing.assert_allclose(boot.shifts(influences), reference, rtol=1e-5, atol=1e-5)


def _paired_log(rng, rows: int, users: int, mu_a: float = 1.0, mu_b: float = 0.8):
    """Scores a, b with known AUCs: Phi(mu / sqrt(2 var)), b's noise has variance 1 + 0.3^2."""
    user = rng.integers(0, users, rows)
    labels = (rng.random(rows) < 0.3).astype(np.int8)
    noise = rng.normal(size=rows)
    a = mu_a * labels + noise
    b = mu_b * labels + noise + 0.3 * rng.normal(size=rows)
    truth = stats.norm.cdf(mu_a / np.sqrt(2)) - stats.norm.cdf(mu_b / np.sqrt(2 * 1.09))
    return labels, user, a, b, truth


def test_bootstrap_interval_covers_the_true_difference():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(60):
        labels, user, a, b, truth = _paired_log(rng, 3000, 300)
        boot = UserBootstrap(labels, user, resamples=400, seed=int(rng.integers(1 << 30)))
        (diff,) = bootstrap_differences(boot, {"a": a, "b": b}, [(["a"], ["b"], "all", np.ones(3000, bool))])
        assert diff.kind == "bootstrap" and diff.mean == pytest.approx(roc_auc_score(labels, a)
                                                                        - roc_auc_score(labels, b))
        low, high = diff.interval(0.05)
        covered += low <= truth <= high
    assert 52 <= covered <= 60  # 95% nominal: 57 expected of 60


def test_bootstrap_se_matches_a_brute_force_user_bootstrap():
    rng = np.random.default_rng(2)
    labels, user, a, b, _ = _paired_log(rng, 2000, 200)
    boot = UserBootstrap(labels, user, resamples=1000, seed=0)
    (diff,) = bootstrap_differences(boot, {"a": a, "b": b}, [(["a"], ["b"], "all", np.ones(2000, bool))])
    brute = []
    for _ in range(300):  # resample users with replacement, re-rank every time
        weights = np.bincount(rng.integers(0, 200, 200), minlength=200)[user]
        brute.append(roc_auc_score(labels, a, sample_weight=weights) - roc_auc_score(labels, b, sample_weight=weights))
    assert diff.se == pytest.approx(np.std(brute, ddof=1), rel=0.2)


# ----------------------------------------------------------------------------- comparisons and their kinds


def _ctr(label: str, seed: int, auc: float, slice_auc: dict | None = None, backbone: str = "fnn") -> dict:
    variant, _, tok = label.partition(" (")
    return dict(kind="ctr", dataset="d", regime="side fields", backbone=backbone, seed=seed, label=label,
                variant=variant, tokenizer=tok.rstrip(")") or None, auc=auc, content_parameters=0, bytes_per_item=0,
                n_test=1000, slices={s: dict(auc=(slice_auc or {}).get(s), n=200) for s in SLICES})


def _records(seeds: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for seed in range(seeds):
        base = 0.70 + 0.01 * rng.normal()
        out += [_ctr("none", seed, base), _ctr("embedding", seed, base + 0.02),
                _ctr("ids (rqgmm)", seed, base + 0.01 + 0.001 * rng.normal()),
                _ctr("ids+embedding (rqgmm)", seed, base + 0.02 + 0.001 * rng.normal())]
    return out


def test_three_seeds_give_student_t_intervals():
    comps = verdict.comparisons(_records(3))
    assert {c["interval"] for c in comps} == {"t"} and {c["column"] for c in comps} == {"all"}
    ids = next(c for c in comps if c["label"] == "ids (rqgmm)")
    assert ids["family"] == 3 and ids["seeds"] == 3 and ids["level"] <= 0.05


def test_one_seed_gives_bootstrap_intervals_from_the_predictions():
    rng = np.random.default_rng(3)
    labels, user, a, b, _ = _paired_log(rng, 1000, 100)
    slices = np.array(["all-rows-only"] * 1000)
    predictions = {("side fields", "fnn", 0, label): p for label, p in
                   (("none", b), ("embedding", a), ("ids (rqgmm)", b), ("ids+embedding (rqgmm)", a))}
    test = verdict.TestRows(labels, user, slices, predictions)
    comps = verdict.comparisons(_records(1), test)
    assert {c["interval"] for c in comps} == {"bootstrap"}
    without = verdict.comparisons(_records(1))  # no predictions kept (runs of an older store): no interval
    assert {c["interval"] for c in without} == {"none"} and all(c["low"] is None for c in without)


# ----------------------------------------------------------------------------- words


def _comp(label, baseline, column, mean, low, high, backbone="fnn"):
    variant, _, tok = label.partition(" (")
    return dict(kind="comparison", regime="side fields", backbone=backbone, tokenizer=tok.rstrip(")") or None,
                variant=variant, label=label, baseline=baseline, column=column, mean=mean, low=low, high=high,
                interval="bootstrap", family=6)


def test_verdict_words_on_hand_made_comparisons():
    comps = [_comp("ids+embedding (rqgmm)", "embedding", "all", 0.0012, 0.0007, 0.0017),
             _comp("ids+embedding (rqgmm)", "embedding", "cold", 0.0003, -0.0010, 0.0016),
             _comp("ids (rqgmm)", "none", "all", 0.004, 0.002, 0.006),
             _comp("ids (rqgmm)", "none", "cold", 0.003, 0.001, 0.005),
             _comp("embedding", "none", "all", 0.010, 0.008, 0.012),
             _comp("embedding", "none", "cold", 0.012, 0.009, 0.015)]
    lines = verdict.verdict_lines(comps)
    assert lines == [
        "Regime side fields:",
        "  IDs (rqgmm): beats no content by +0.0040 [+0.0020, +0.0060] AUC on all rows; beats no content by "
        "+0.0030 [+0.0010, +0.0050] AUC on cold items.",
        "  IDs+embedding (rqgmm): beats the embedding by +0.0012 [+0.0007, +0.0017] AUC on all rows; on cold items "
        "no difference from the embedding is shown.",
        "  The embedding: beats no content by +0.0100 [+0.0080, +0.0120] AUC on all rows; beats no content by "
        "+0.0120 [+0.0090, +0.0150] AUC on cold items.",
        "  Share of the embedding's cold-item gain that IDs alone (rqgmm) recover: fnn 25% (+0.0030 of +0.0120).",
    ]


# ----------------------------------------------------------------------------- warnings and plots


def test_warnings_name_the_problem_and_the_fix():
    tok = dict(kind="tokenizer", tokenizer="rqgmm", shared_items=0.999, utilization=[1.0, 0.05],
               warnings=["EM did not converge in 100 iterations"])
    inputs = dict(kind="inputs", items=1206, distinct_vectors={"embedding": 33})
    ctr = _ctr("none", 0, 0.7, dict(cold=0.7, tail=0.7, torso=0.7))
    ctr["slices"]["head"] = dict(auc=None, n=4)
    lines = caveats.caveats([tok, inputs, ctr])
    assert lines == [
        "tokenizer rqgmm: EM did not converge in 100 iterations; the IDs may be unstable: compare seeds, or pass "
        "fewer --levels or a smaller --codebook-size",
        "tokenizer rqgmm: 99.9% of the items share their full ID with another item; the IDs cannot tell those items "
        "apart: check the embeddings (distinct vectors), or pass more --levels or a larger --codebook-size",
        "tokenizer rqgmm: level 2 uses 5.0% of its codes; pass a smaller --codebook-size (or fewer --levels)",
        "embedding 'embedding': only 33 distinct vectors for 1,206 items (near-duplicates); IDs cannot separate items "
        "the embedding does not: embed richer item text (e.g. `rqgmm embed --text title,description`)",
        "slice head: 4 test rows; no AUC and no verdict there: pass a longer log to judge head items",
    ]


def test_full_utilization_draws_no_plot(tmp_path):
    full = [dict(kind="tokenizer", dataset="d", tokenizer="rqgmm", setting="2x4", utilization=[1.0, 1.0])]
    assert plots.plot_utilization(full, tmp_path) == []
    full[0]["utilization"] = [1.0, 0.5]
    assert len(plots.plot_utilization(full, tmp_path)) == 1


def test_terminal_lines_summarise_backbones_on_all_rows_and_cold_items():
    comps = [_comp("ids+embedding (rqgmm)", "embedding", "all", 0.0012, 0.0007, 0.0017),
             _comp("ids+embedding (rqgmm)", "embedding", "all", 0.0005, -0.0001, 0.0011, backbone="ipnn"),
             _comp("ids+embedding (rqgmm)", "embedding", "cold", -0.004, -0.006, -0.002),
             _comp("ids+embedding (rqgmm)", "embedding", "cold", 0.0003, -0.0010, 0.0016, backbone="ipnn"),
             _comp("ids+embedding (rqgmm)", "embedding", "head", 0.01, 0.005, 0.015)]
    assert verdict.brief_lines(comps) == [
        "side fields: IDs+embedding (rqgmm) vs the embedding: all rows: beats it with 1 of 2 backbones (+0.0012); "
        "cold items: loses to it with 1 of 2 backbones (−0.0040)"]
    assert verdict.brief_lines(comps[:1]) == [
        "side fields: IDs+embedding (rqgmm) vs the embedding: all rows: beats it +0.0012 [+0.0007, +0.0017]"]


# ----------------------------------------------------------------------------- head to head, the recommendation


def _head(a, b, column, mean, low, high, variant="ids", covers=True):
    return dict(kind="comparison", regime="side fields", backbone="fnn", tokenizer=a, rival=b, variant=variant,
                label=f"{variant} ({a})", baseline=f"{variant} ({b})", column=column, mean=mean, low=low, high=high,
                low95=low, high95=high, interval="seeds+users", family=6, covers_training=covers,
                name=f"{a} 2x256", rival_name=f"{b} 2x256")


def test_head_to_head_words_name_the_winner_or_say_cannot_be_told_apart():
    assert verdict.head_to_head(_head("rqgmm", "rqkmeans", "all", 0.01, 0.004, 0.016)) == \
        "rqgmm 2x256 beats rqkmeans 2x256 by +0.0100 [+0.0040, +0.0160]"
    assert verdict.head_to_head(_head("rqgmm", "rqkmeans", "all", -0.01, -0.016, -0.004)) == \
        "rqkmeans 2x256 beats rqgmm 2x256 by +0.0100 [+0.0040, +0.0160]"
    assert verdict.head_to_head(_head("rqgmm", "rqkmeans", "all", 0.001, -0.002, 0.004)).startswith(
        "rqgmm 2x256 and rqkmeans 2x256 cannot be told apart")


def test_terminal_head_to_head_sums_up_backbones_and_labels_one_seed():
    heads = [_head("rqgmm", "rqkmeans", "all", 0.01, 0.004, 0.016),
             dict(_head("rqgmm", "rqkmeans", "all", 0.001, -0.002, 0.004), backbone="ipnn"),
             _head("rqgmm", "rqkmeans", "cold", -0.002, -0.02, 0.016)]
    assert verdict.brief_lines(heads) == [
        "side fields: IDs, rqgmm 2x256 vs rqkmeans 2x256: all rows: beats it with 1 of 2 backbones (+0.0100); "
        "cold items: no difference shown −0.0020 [−0.0200, +0.0160]"]
    one = [_head("rqgmm", "rqkmeans", "all", -0.0005, None, None, covers=False),
           dict(_head("rqgmm", "rqkmeans", "all", -0.0002, None, None, covers=False), backbone="ipnn")]
    assert verdict.brief_lines(one) == [
        "side fields: IDs, rqgmm 2x256 vs rqkmeans 2x256: all rows: rqgmm 2x256 − rqkmeans 2x256 −0.0005 to "
        "−0.0002 (one seed: training noise not covered)"]


def test_recommendation_is_the_cheapest_unbeaten_configuration_or_says_none_beats():
    comps = [_comp("ids (rqgmm)", "none", "all", 0.004, 0.002, 0.006),
             _comp("ids (rqkmeans)", "none", "all", 0.002, 0.001, 0.003),
             _comp("ids+embedding (rqgmm)", "embedding", "all", 0.0005, -0.001, 0.002)]
    costs = {"ids (rqgmm)": dict(bytes_per_item=2, content_parameters=100),
             "ids (rqkmeans)": dict(bytes_per_item=1, content_parameters=50)}
    line = verdict.recommendation(comps + [_head("rqgmm", "rqkmeans", "all", 0.002, 0.001, 0.003)], costs)
    assert line.startswith("Recommendation (side fields): use IDs (rqgmm): +0.0040 AUC over no content")
    assert "2 B/item" in line
    # rqkmeans is cheaper but beaten head to head; without that comparison the cheaper one is the choice
    assert "use IDs (rqkmeans): +0.0020" in verdict.recommendation(comps, costs)
    flat = [_comp("ids (rqgmm)", "none", "all", 0.001, -0.001, 0.003),
            _comp("ids+embedding (rqgmm)", "embedding", "all", 0.0005, -0.001, 0.002)]
    assert verdict.recommendation(flat, costs) == (
        "Recommendation (side fields): no IDs configuration adds to the embedding on all rows: keep the embedding; "
        "the IDs add nothing over item id and the side fields.")


def test_the_shared_id_warning_advises_more_levels_only_when_ids_merge_differing_embeddings():
    """The flights case: most items are exact duplicates of another's vector, so more levels cannot split them."""
    duplicates = dict(kind="tokenizer", tokenizer="rqgmm", shared_items=0.957, shared_vectors=0.99,
                      merged_items=0.01, utilization=[1.0])
    merged = dict(duplicates, shared_vectors=0.02, merged_items=0.95)
    assert caveats.caveats([duplicates]) == [
        "tokenizer rqgmm: 95.7% of the items share their full ID with another item, 99.0% share their embedding "
        "vector; only 1.0% share an ID with an item whose embedding differs, so more levels or codes would not "
        "separate them: the embedding does not; embed richer item text (e.g. `rqgmm embed --text "
        "title,description`) or keep the IDs as they are"]
    assert caveats.caveats([merged]) == [
        "tokenizer rqgmm: 95.7% of the items share their full ID with another item, 2.0% share their embedding "
        "vector; the IDs merge 95.0% of the items with an item whose embedding differs: pass more --levels or a "
        "larger --codebook-size"]
    retrieval = dict(kind="retrieval", ids="rqgmm", dedup="generated")
    assert caveats.caveats([merged, retrieval, dict(retrieval, ids="item-id", dedup=None)]) == [
        "tokenizer rqgmm: 95.7% of the items share their full ID with another item (the retrieval task's generated "
        "dedup token makes each ID one item, but tells those items apart by an index that carries no content), "
        "2.0% share their embedding vector; the IDs merge 95.0% of the items with an item whose embedding differs: "
        "pass more --levels or a larger --codebook-size"]
    assert caveats.caveats([merged, dict(retrieval, dedup="none")]) == caveats.caveats([merged])


def test_a_tokenizer_record_counts_duplicate_vectors_apart_from_merged_items():
    from rqgmm.evaluate.config import config_from
    from rqgmm.evaluate.tokenizer_stage import fit_tokenizer

    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(10, 4)).astype(np.float32), 30, axis=0)  # 10 distinct vectors, 300 items
    config = config_from(dict(embedding=["e"], methods="rqkmeans", levels=2, codebook_size=16))
    metrics, _ = fit_tokenizer("rqkmeans", X, np.arange(300), config, seed=0)
    assert metrics["shared_items"] == 1.0 and metrics["shared_vectors"] == 1.0 and metrics["merged_items"] == 0.0
    record = dict(metrics, kind="tokenizer", tokenizer="rqkmeans", warnings=[])
    assert [line for line in caveats.caveats([record]) if "full ID" in line][0].endswith("keep the IDs as they are")
