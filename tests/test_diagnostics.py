"""Diagnostics without training: co-click coherence and click-rate R² by level, against random IDs."""

from __future__ import annotations

import numpy as np
import pytest

from rqgmm.ids.diagnostics import click_rate_r2, coclick_coherence, consecutive_pairs
from rqgmm.ids.metrics import prefix_groups


def test_consecutive_pairs_keep_each_users_order_and_positives_only():
    users = np.array([1, 2, 1, 1, 2, 1])
    rows = np.array([10, 20, 11, 12, 21, 13])
    clicked = np.array([1, 1, 1, 0, 1, 1])
    first, second = consecutive_pairs(users, rows, clicked)
    assert sorted(zip(first.tolist(), second.tolist())) == [(10, 11), (11, 13), (20, 21)]
    for ids in (users.astype(str), users * 10**12, users - 5):  # any comparable ids: the same pairs
        assert sorted(zip(*(a.tolist() for a in consecutive_pairs(ids, rows, clicked, 2)))) == [
            (10, 11), (11, 13), (20, 21)]
    for chunk in (1, 2, 4):  # a user's last positive carried across chunks
        assert sorted(zip(*(a.tolist() for a in consecutive_pairs(users, rows, clicked, chunk)))) == [
            (10, 11), (11, 13), (20, 21)]


def _sorted_pairs(users, rows, clicked):
    """The pairs by one stable sort of the whole log by user (the reference the chunked pass replaced)."""
    keep = np.asarray(clicked, dtype=bool)
    order = np.argsort(users[keep], kind="stable")
    u, r = users[keep][order], rows[keep][order]
    same = u[1:] == u[:-1]
    return r[:-1][same], r[1:][same]


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 22])
def test_consecutive_pairs_by_chunks_are_the_pairs_of_one_sort_and_give_the_same_coherence(chunk):
    rng = np.random.default_rng(chunk)
    users, rows = rng.integers(0, 50, 3000).astype(np.int32), rng.integers(0, 200, 3000).astype(np.int32)
    clicked = rng.random(3000) < 0.4
    got, want = consecutive_pairs(users, rows, clicked, chunk), _sorted_pairs(users, rows, clicked)
    assert got[0].dtype == np.int32
    assert sorted(zip(*(a.tolist() for a in got))) == sorted(zip(*(a.tolist() for a in want)))
    codes = rng.integers(0, 5, (200, 2))
    coherence = coclick_coherence(codes, *got)
    assert coherence == coclick_coherence(codes, *want)
    for level, groups in zip(coherence, prefix_groups(codes)):  # the share as the whole-array mean gave it
        assert level["observed"] == float((groups[want[0]] == groups[want[1]]).mean())
    assert consecutive_pairs(users[:0], rows[:0], clicked[:0])[0].tolist() == []


def test_coherence_is_the_observed_share_against_random_ids_of_the_same_sizes():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])  # level 1: two groups of 2
    first, second = np.array([0, 2]), np.array([1, 3])  # both pairs share their level-1 prefix
    level1, level2 = coclick_coherence(codes, first, second)
    assert level1["observed"] == 1.0 and level1["expected"] == pytest.approx(4 / 12)
    assert level1["lift"] == pytest.approx(3.0) and level2["observed"] == 0.0 and level2["expected"] == 0.0


def test_random_ids_average_the_expected_coherence():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(40, 1))
    first, second = rng.integers(0, 40, 200), rng.integers(0, 40, 200)
    observed = [coclick_coherence(rng.permutation(codes), first, second)[0]["observed"] for _ in range(400)]
    assert np.mean(observed) == pytest.approx(coclick_coherence(codes, first, second)[0]["expected"], abs=0.01)


def test_click_rate_r2_is_one_when_the_prefix_sets_the_rate_and_near_chance_at_random():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    rows = np.repeat(np.arange(4), 10)
    clicked = np.concatenate([np.ones(20), np.zeros(20)])  # items 0, 1 always clicked, 2, 3 never
    level1, level2 = click_rate_r2(codes, rows, clicked)
    assert level1["r2"] == pytest.approx(1.0) and level1["expected"] == pytest.approx(1 / 3)
    rng = np.random.default_rng(1)
    rates = rng.random(60)
    rows, clicked = np.repeat(np.arange(60), 50), (rng.random((60, 50)) < rates[:, None]).reshape(-1)
    random_codes = rng.integers(0, 4, size=(60, 1))
    r2 = [click_rate_r2(rng.permutation(random_codes), rows, clicked)[0]["r2"] for _ in range(300)]
    assert np.mean(r2) == pytest.approx(click_rate_r2(random_codes, rows, clicked)[0]["expected"], abs=0.01)


def test_the_report_table_gives_the_rank_correlation_with_the_trained_auc_from_three_configurations():
    from rqgmm.evaluate.id_checks import diagnostics_section

    def diagnostic(name, lift, r2):
        return dict(kind="diagnostic", tokenizer=name, modality="fused", seed=0, pairs=1200,
                    coherence=[dict(level=1, observed=0.5 * lift, expected=0.5, lift=lift)],
                    r2=[dict(level=1, r2=r2, expected=0.01)])

    names = ["rqgmm 2x4", "rqgmm 3x4", "rqkmeans 2x4"]
    records = [diagnostic(n, lift, r2) for n, lift, r2 in zip(names, [1.5, 2.0, 1.2], [0.3, 0.2, 0.1])]
    records += [dict(kind="ctr", tokenizer=n, variant="ids", auc=auc) for n, auc in zip(names, [0.71, 0.72, 0.70])]
    lines = diagnostics_section(records)
    assert lines[0] == "## Diagnostics without training (training rows, full IDs)"
    assert "| rqgmm 3x4 | fused | 1,200 | 2.00 |" in lines[2]
    assert lines[4] == ("Rank correlation with the `ids` AUC on all rows over 3 configurations: co-click lift "
                        "+1.00, click-rate R² +0.50.")
    assert len(diagnostics_section(records[:2] + records[3:5])) == 4  # two configurations: no correlation


@pytest.mark.parametrize("chunk", [7, 1 << 22])
def test_click_facts_computed_once_equal_each_table_alone_and_the_float_weighted_rates(chunk, monkeypatch):
    """One ClickFacts serves every codes table of a catalogue: the same checks as each table computed alone; its
    click rates (clicks counted as integers) equal the float-weighted bincount of the log."""
    from rqgmm.ids import diagnostics as module
    from rqgmm.ids.diagnostics import ClickFacts, click_rates, diagnostics

    monkeypatch.setattr(module, "CHUNK", chunk)  # clicks counted a chunk of rows at a time
    rng = np.random.default_rng(5)
    rows, users = rng.integers(0, 60, 5000), rng.integers(0, 300, 5000)
    clicked = rng.random(5000) < 0.3
    facts = ClickFacts.of(rows, users, clicked, 80)
    for codes in (rng.integers(0, 4, (80, 2)), rng.integers(0, 9, (80, 3))):
        assert facts.diagnostics(codes) == diagnostics(codes, rows, users, clicked)
    counts = np.bincount(rows, minlength=80)
    seen = np.flatnonzero(counts)
    reference = np.bincount(rows, weights=clicked.astype(np.float64), minlength=80)[seen] / counts[seen]
    got_seen, rates = click_rates(rows, clicked, 80)
    np.testing.assert_array_equal(got_seen, seen)
    np.testing.assert_array_equal(rates, reference)
