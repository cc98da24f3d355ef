"""Stable IDs across refits: warm starts, alignment, churn and the model's lineage."""

import logging
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import rqgmm
from rqgmm.refit.align import align, contingency
from rqgmm.refit.churn import churn
from rqgmm.errors import InputError
from rqgmm.tokenizers.gmm import DiagonalGMM

METHODS = [rqgmm.RQGMM, rqgmm.RQKMeans]


def hierarchy(seed=0, n_top=8, n_sub=6, per=12, d=10):
    """Items around top-level centres plus sub-level offsets (N = n_top * n_sub * per): both levels are real."""
    rng = np.random.default_rng(seed)
    top, sub = rng.normal(0, 20, (n_top, d)), rng.normal(0, 4, (n_sub, d))
    X = np.concatenate([top[i] + sub[j] + rng.normal(0, 0.3, (per, d)) for i in range(n_top) for j in range(n_sub)])
    return X[rng.permutation(len(X))].astype(np.float32)


@pytest.fixture(scope="module")
def X():
    return hierarchy()


@pytest.fixture(scope="module")
def fits(X):
    """Per method: a model and an independent refit with another seed."""
    return {cls: (cls(levels=2, codebook_size=[8, 6], random_state=0).fit(X),
                  cls(levels=2, codebook_size=[8, 6], random_state=11).fit(X)) for cls in METHODS}


@pytest.mark.parametrize("cls", METHODS)
def test_aligning_a_model_to_itself_changes_nothing(fits, X, cls):
    model = fits[cls][0]
    same = align(model, model, X)
    for name, tensor in model.state_tensors().items():
        assert torch.equal(same.state_tensors()[name], tensor), name
    np.testing.assert_array_equal(same.encode(X), model.encode(X))
    assert same.lineage_["full_id_changed"] == 0.0 and same.lineage_["adjusted_rand"] == [1.0, 1.0]


@pytest.mark.parametrize("cls", METHODS)
def test_alignment_renumbers_codes_without_changing_what_they_mean(fits, X, cls):
    old, new = fits[cls]
    aligned = align(new, old, X)
    codes, aligned_codes = new.encode(X), aligned.encode(X)
    np.testing.assert_allclose(aligned.decode(aligned_codes), new.decode(codes), rtol=0, atol=0)
    for level in range(2):  # a renumbering: one code of the new model maps to exactly one aligned code
        pairs = np.unique(np.column_stack([codes[:, level], aligned_codes[:, level]]), axis=0)
        assert len(pairs) == len(np.unique(codes[:, level]))
    before, after = churn(old.encode(X), codes), churn(old.encode(X), aligned_codes)
    assert after["adjusted_rand"] == pytest.approx(before["adjusted_rand"])  # the partition is untouched
    assert after["full_id_changed"] <= before["full_id_changed"]
    # Level 1 reaches the optimal renumbering's agreement (an independent Hungarian on the co-assignments).
    counts = contingency(codes[:, 0], old.encode(X)[:, 0], 8)
    best = counts[linear_sum_assignment(counts, maximize=True)].sum() / len(X)
    assert 1.0 - after["code_changed"][0] == pytest.approx(best)
    assert aligned.lineage_["how"] == "aligned" and aligned.lineage_["before"]["full_id_changed"] == \
        before["full_id_changed"]


@pytest.mark.parametrize("cls, params", [(rqgmm.RQGMM, {}), (rqgmm.PRQKMeans, {}),
                                         # Lloyd stopped by tol keeps moving a few items when continued:
                                         # the claim is for a model fitted to its fixed point (tol=0).
                                         (rqgmm.RQKMeans, {"tol": 0.0})])
def test_warm_start_on_the_same_data_gives_the_codes_back(X, cls, params):
    old = cls(levels=2, codebook_size=[8, 6], random_state=0, **params).fit(X)
    warm = cls(levels=2, codebook_size=[8, 6], random_state=5, **params).fit(X, init=old)
    same = (warm.encode(X) == old.encode(X)).all(1).mean()
    assert same >= 0.999
    assert warm.lineage_["how"] == "warm_start" and warm.lineage_["full_id_changed"] == pytest.approx(1 - same)


def test_warm_start_keeps_most_ids_of_a_grown_catalogue(fits, X):
    old = fits[rqgmm.RQKMeans][0]
    grown = np.concatenate([X, hierarchy(seed=0, per=2)[:60] + 0.1])
    warm = rqgmm.RQKMeans(levels=2, codebook_size=[8, 6], random_state=5).fit(grown, init=old)
    assert (warm.encode(X) == old.encode(X)).all(1).mean() >= 0.99


def test_lineage_is_saved_and_read_back(fits, X, tmp_path):
    aligned = align(fits[rqgmm.RQGMM][1], fits[rqgmm.RQGMM][0], X)
    aligned.save(tmp_path / "m")
    assert rqgmm.load(tmp_path / "m").lineage_ == aligned.lineage_
    refit = rqgmm.RQGMM(levels=2, codebook_size=[8, 6], random_state=0).fit(X)
    assert not hasattr(refit, "lineage_") and "lineage" not in refit.get_config()


@pytest.mark.parametrize("kwargs, expect", [
    (dict(levels=3, codebook_size=[8, 6, 4]), "has 2 levels of sizes \\[8, 6\\]"),
    (dict(levels=2, codebook_size=[8, 5]), "use --levels 2 --codebook-size 8,6"),
])
def test_warm_start_from_an_incompatible_model_is_refused(fits, X, kwargs, expect):
    with pytest.raises(InputError, match=expect):
        rqgmm.RQGMM(random_state=0, **kwargs).fit(X, init=fits[rqgmm.RQGMM][0])
    with pytest.raises(InputError, match="'rqkmeans' model and this fit is 'rqgmm'"):
        rqgmm.RQGMM(levels=2, codebook_size=[8, 6]).fit(X, init=fits[rqgmm.RQKMeans][0])
    with pytest.raises(InputError, match="takes 10-dimensional embeddings, these have 4"):
        rqgmm.RQGMM(levels=2, codebook_size=[8, 6]).fit(X[:, :4], init=fits[rqgmm.RQGMM][0])


def test_churn_separates_renumbering_from_change():
    old = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]])
    renumbered = np.column_stack([(old[:, 0] + 1) % 3, old[:, 1]])
    out = churn(old, renumbered)
    assert out["full_id_changed"] == 1.0 and out["code_changed"] == [1.0, 0.0]
    assert out["adjusted_rand"] == [1.0, 1.0]
    assert churn(old, old) == {"n_items": 6, "full_id_changed": 0.0, "code_changed": [0.0, 0.0],
                               "adjusted_rand": [1.0, 1.0]}


def test_a_warm_started_gmm_leaves_dead_components_empty_and_keeps_the_other_codes():
    """Re-seeding by splitting would renumber half of the heaviest component's items; a warm start does not."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 4)) * 10
    labels = np.repeat(np.arange(6), [300, 200, 150, 100, 60, 40])
    X = (centres[labels] + rng.normal(size=(len(labels), 4))).astype(np.float32)
    old = DiagonalGMM(6, random_state=0, progress=False).fit(X)
    kept = labels != 5  # the smallest cluster's items leave the catalogue: its component dies
    new = DiagonalGMM(6, random_state=0, progress=False).fit(X[kept], init=old)
    assert sum(new.n_fixed_) == 0
    np.testing.assert_array_equal(new.predict(X[kept]), old.predict(X[kept]))
    assert float(new.weights_.min()) < 1e-3  # the dead component stays, empty, under its old code


def test_a_loaded_model_keeps_its_fit_history_and_a_warm_start_logs_its_churn(X, tmp_path, caplog):
    """history_ survives save/load as the fitted model had it; a warm start says how many IDs moved."""
    model = rqgmm.RQGMM(levels=2, codebook_size=8, random_state=0).fit(X)
    model.save(tmp_path / "m")
    assert rqgmm.load(tmp_path / "m").history_ == model.history_ and all(model.history_)
    with caplog.at_level(logging.INFO, logger="rqgmm"):
        warm = rqgmm.RQGMM(levels=2, codebook_size=8, random_state=1).fit(X, init=model)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("warm start:"))
    assert f"{100 * warm.lineage_['full_id_changed']:.2f}% of {len(X)} items" in line
