"""Collision-free last level: `--unique reassign` and its library form."""

import itertools

import numpy as np
import pytest
from conftest import make_mixture

import rqgmm
from rqgmm.cli import main
from rqgmm.ids.codes import read_codes
from rqgmm.ids.metrics import collided_items, largest_collision
from rqgmm.ids.reassign import colliding, collision_free, last_level_costs


@pytest.fixture(scope="module")
def fitted():
    X = make_mixture(n_per=40, k=6, d=6, seed=4)[0].astype(np.float32)  # 240 items
    model = rqgmm.RQKMeans(levels=2, codebook_size=[24, 32], random_state=0).fit(X)
    return model, X


def test_reassign_makes_ids_distinct_where_the_last_level_has_room(fitted):
    model, X = fitted
    codes = model.encode(X)
    assert np.unique(codes[:, 0], return_counts=True)[1].max() <= 32  # every prefix has room
    assert collided_items(codes) > 0.05  # there is something to fix
    out, suffix = collision_free(model, X, codes)
    assert collided_items(out) == 0.0 and largest_collision(out) == 1 and not suffix.any()
    moving = colliding(codes)
    np.testing.assert_array_equal(out[~moving], codes[~moving])  # only colliding items change
    np.testing.assert_array_equal(out[:, 0], codes[:, 0])  # and they keep their prefixes


def test_the_matching_is_optimal_against_a_brute_force_reference(fitted):
    model, X = fitted
    codes = model.encode(X)
    first = np.flatnonzero(colliding(codes))[0]
    group = np.flatnonzero((codes == codes[first]).all(1))[:3]  # two or three items sharing one full ID
    out, suffix = collision_free(model, X[group], codes[group])
    costs = last_level_costs(model, X[group], codes[group])
    n = len(group)
    best = min(costs[np.arange(n), list(z)].sum() for z in itertools.permutations(range(32), n))
    assert costs[np.arange(n), out[:, 1]].sum() == pytest.approx(best)
    assert len(np.unique(out, axis=0)) == n and not suffix.any()


def test_a_full_prefix_falls_back_to_the_suffix(fitted):
    model, X = fitted
    codes = np.zeros((40, 2), dtype=np.int64)  # 40 items on one prefix: only 32 last-level codes
    out, suffix = collision_free(model, np.repeat(X[:1], 40, 0), codes)
    assert len(np.unique(out[:, 1])) == 32 and collided_items(out) > 0
    assert len(np.unique(np.column_stack([out, suffix]), axis=0)) == 40


def test_encode_unique_reassign_end_to_end(fitted, tmp_path, monkeypatch):
    model, X = fitted
    monkeypatch.chdir(tmp_path)
    model.save("model")
    np.save("x.npy", X)
    assert main(["encode", "model", "x.npy", "--out", "c.parquet", "--unique", "reassign", "--quiet"]) == 0
    assert main(["encode", "model", "x.npy", "--out", "s.parquet", "--unique", "--quiet"]) == 0
    reassigned, suffixed = read_codes("c.parquet"), read_codes("s.parquet")
    assert collided_items(reassigned.codes) == 0.0 and reassigned.suffix_range == [0, 0]
    np.testing.assert_array_equal(suffixed.codes, model.encode(X))  # the default mode is unchanged
    assert suffixed.suffix_range[1] > 0
