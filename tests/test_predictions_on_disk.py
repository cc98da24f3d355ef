"""Predictions on disk (issue 28): CTR runs' test predictions stay in runs/<key>.npz and are read when a
comparison needs them; the bootstrap streams over comparisons in blocks; the verdict is the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rqgmm.cli import main
from rqgmm.evaluate.grid import Job, RecordStore, Result, StoredArray, StoredArrays
from rqgmm.evaluate.intervals import UserBootstrap, bootstrap_differences
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
    assert list(stages) == ["read+encode", "split", "tokenizers", "ctr", "intervals"]
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
