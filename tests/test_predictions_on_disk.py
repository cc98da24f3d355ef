"""Predictions on disk (issue 28): CTR runs' test predictions stay in runs/<key>.npz and are read when a
comparison needs them; the bootstrap streams over comparisons in blocks; the verdict is the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rqgmm.cli import main
from rqgmm.evaluate.grid import Job, RecordStore, Result, StoredArray, StoredArrays
from rqgmm.evaluate.intervals import InfluenceTable, UserBootstrap, bootstrap_differences
from synthetic import write_synthetic

GRID = ["--categorical", "brand", "--embedding", "text_emb", "--methods", "rqkmeans", "--levels", "2",
        "--codebook-size", "4", "--variants", "none,embedding,ids", "--backbones", "fnn", "--seeds", "2",
        "--quick", "--quiet"]


def verdict(out: Path) -> list[dict]:
    recs = json.loads((out / "results.json").read_text())["records"]
    return [r for r in recs if r["kind"] == "comparison"]


def test_the_verdict_of_a_fresh_run_equals_the_verdict_after_resuming_from_disk(tmp_path):
    (tmp_path / "log").mkdir()
    rows, items = write_synthetic(tmp_path / "log")
    out = tmp_path / "out"
    command = ["evaluate", str(rows), "--items", str(items), "--out", str(out), *GRID]
    assert main(command) == 0
    fresh = verdict(out)
    stages = json.loads((out / "results.json").read_text())["meta"]["stages"]  # item 4: seconds and peak per stage
    assert list(stages) == ["read+encode", "split", "tokenizers", "diagnostics", "ctr", "intervals"]
    assert all(v["seconds"] >= 0 and v["peak_rss_anon_mb"] > 0 for v in stages.values())
    assert "- stages: read+encode " in (out / "report.md").read_text()
    assert fresh and any(r["interval"] == "seeds+users" for r in fresh)  # the bootstrap read the stored predictions
    (out / "results.json").unlink()
    assert main(command) == 0  # every run finished: all resumed, the predictions read from runs/*.npz
    assert verdict(out) == fresh


def test_stored_arrays_are_read_when_asked_for_and_never_held(tmp_path):
    store = RecordStore(tmp_path, {"a": 1})
    store.open()
    predictions = np.linspace(0, 1, 7, dtype=np.float32)
    store.put("ctr-x", Job("ctr", {}, "x"), Result({"kind": "ctr"}, {"predictions": predictions}))
    (found,) = store.finished(["ctr-x"], on_disk=("ctr",)).values()
    assert isinstance(found.arrays, StoredArrays) and list(found.arrays) == ["predictions"]
    lazy = found.arrays.lazy("predictions")
    assert isinstance(lazy, StoredArray) and np.array_equal(np.asarray(lazy), predictions)
    (held,) = store.finished(["ctr-x"]).values()  # other kinds: read at once, as before
    assert isinstance(held.arrays, dict) and np.array_equal(held.arrays["predictions"], predictions)


@pytest.mark.parametrize("budget", [1, 4 * 150 * 3])
def test_the_bootstrap_in_blocks_of_comparisons_equals_one_pass(budget):
    rng = np.random.default_rng(0)
    n, users = 3000, 150
    labels, user = rng.integers(0, 2, n), rng.integers(0, users, n)
    scores = {k: labels * mu + rng.normal(size=n) for k, mu in zip("abcd", (0.2, 0.4, 0.5, 0.9))}
    rows = rng.random(n) < 0.5
    pairs = [([a], [b], column, mask) for a, b in (("a", "b"), ("c", "a"), ("d", "b"), ("b", "c"))
             for column, mask in (("all", np.ones(n, bool)), ("half", rows))]
    boot = UserBootstrap(labels, user, resamples=300, seed=3)
    whole, blocked = bootstrap_differences(boot, scores, pairs), bootstrap_differences(boot, scores, pairs, budget)
    assert [d.mean for d in blocked] == [d.mean for d in whole]
    np.testing.assert_allclose([d.se for d in blocked], [d.se for d in whole], rtol=1e-6)


def test_the_influence_table_in_a_file_reads_back_what_memory_holds_and_leaves_nothing(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(5, 1000)).astype(np.float32)
    with InfluenceTable(5, 1000, budget=1 << 20) as memory, InfluenceTable(5, 1000, 1, tmp_path) as stored:
        assert memory.memory is not None and stored.memory is None
        for row in (3, 0, 4, 1, 2):  # in any order
            memory.put(row, values[row])
            stored.put(row, values[row])
        for start, stop in ((0, 1000), (17, 530), (999, 1000)):
            assert np.array_equal(stored.rows(start, stop), values[:, start:stop])
            assert np.array_equal(memory.rows(start, stop), values[:, start:stop])
    assert not list(tmp_path.iterdir())  # the temporary file is gone


def test_the_bootstrap_through_a_file_equals_the_bootstrap_in_memory(tmp_path):
    rng = np.random.default_rng(2)
    n, users = 2000, 120
    labels, user = rng.integers(0, 2, n), rng.integers(0, users, n)
    scores = {k: labels * mu + rng.normal(size=n) for k, mu in zip("abc", (0.2, 0.4, 0.9))}
    pairs = [([a, c], [b, a], "all", np.ones(n, bool)) for a, b, c in (("a", "b", "c"), ("c", "a", "b"))]
    boot = UserBootstrap(labels, user, resamples=200, seed=5)
    kept = {k: v.copy() for k, v in scores.items()}
    held = bootstrap_differences(boot, scores, pairs)
    filed = bootstrap_differences(boot, scores, pairs, budget=4 * users * 5, directory=tmp_path)  # table > budget
    assert [(d.mean, d.kind) for d in filed] == [(d.mean, d.kind) for d in held]
    # the same weights and influences; one comparison per group at this budget: only BLAS's rounding differs
    np.testing.assert_allclose([d.se for d in filed], [d.se for d in held], rtol=1e-6)
    assert all(np.array_equal(kept[k], scores[k]) for k in scores) and not list(tmp_path.iterdir())


def test_runs_scored_side_by_side_in_threads_give_the_one_at_a_time_bootstrap(monkeypatch):
    """Influences of several runs computed in threads (small test sets) or one run at a time (large ones): the
    same differences and resamples, bit for bit, in the pairs' order."""
    from rqgmm.evaluate import intervals

    rng = np.random.default_rng(4)
    n, users = 4000, 300
    labels, user = rng.integers(0, 2, n), rng.integers(0, users, n)
    scores = {k: (labels * mu + rng.normal(size=n)).astype(np.float32) for k, mu in zip("abcde", (0, .2, .4, .6, .8))}
    pairs = [([a], [b], column, mask) for a, b in (("a", "b"), ("e", "c"), ("d", "a"), ("c", "b"), ("e", "d"))
             for column, mask in (("all", np.ones(n, bool)), ("part", rng.random(n) < 0.3))]
    boot = UserBootstrap(labels, user, resamples=200, seed=1)
    monkeypatch.setattr(intervals, "_cores", lambda: 3)  # 3 threads over 5 runs: a full window and a short one
    threaded = bootstrap_differences(boot, scores, pairs)
    monkeypatch.setattr(intervals, "PARALLEL_BYTES", 1)
    alone = bootstrap_differences(boot, scores, pairs)
    assert [(d.mean, d.se) for d in threaded] == [(d.mean, d.se) for d in alone]
    assert all(np.array_equal(t.samples, a.samples) for t, a in zip(threaded, alone))
