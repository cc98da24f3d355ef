"""One item-id join, one duplicate check, one checked embedding stream, one model fingerprint.

The join and the duplicate check are held to a plain numpy/dict reference on 10^6+ ids; the
in-memory fingerprint to the one read back from the saved directory.
"""

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rqgmm.errors import InputError
from rqgmm.files import formats as io
from rqgmm.files.itemjoin import check_unique_ids, has_repeats, positions
from rqgmm.refit.churn import common_items
from rqgmm.refit.lineage import fingerprint_of
from rqgmm.runtime.validation import checked_batches
from rqgmm.store.generations import delta_file, export_dir, generation_file, generation_of
from rqgmm.tokenizers.base import load, tokenizer_class

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _reference_positions(query, values):
    """The dict join the vectorised one replaced."""
    where = {item: i for i, item in enumerate(values.tolist())}
    found = np.array([q in where for q in query.tolist()], dtype=bool)
    return found, np.array([where.get(q, 0) for q in query.tolist()], dtype=np.int64)


def test_positions_equal_a_dict_join_on_a_million_integer_ids():
    rng = np.random.default_rng(0)
    values = rng.permutation(3_000_000)[:1_200_000].astype(np.int64)
    query = rng.integers(0, 3_000_000, size=1_000_000)
    found, where = positions(query, values)
    ref_found, ref_where = _reference_positions(query, values)
    assert 0 < found.sum() < len(query)
    np.testing.assert_array_equal(found, ref_found)
    np.testing.assert_array_equal(where, ref_where)


def test_positions_equal_a_dict_join_on_string_ids_and_never_match_across_kinds():
    rng = np.random.default_rng(1)
    values = np.array([f"item-{i}" for i in rng.permutation(200_000)[:120_000]], dtype=object)
    query = np.array([f"item-{i}" for i in rng.integers(0, 200_000, size=100_000)])
    for got, ref in zip(positions(query, values), _reference_positions(query, values)):
        np.testing.assert_array_equal(got, ref)
    found, _ = positions(np.arange(5), np.array(["0", "1"]))
    assert not found.any()


def test_common_items_keep_the_new_order_and_refuse_disjoint_tables():
    old, new = np.array([7, 3, 9, 1]), np.array([1, 8, 7, 3])
    new_rows, old_rows = common_items(old, new, 4, 4)
    np.testing.assert_array_equal(new_rows, [0, 2, 3])
    np.testing.assert_array_equal(old[old_rows], new[new_rows])
    with pytest.raises(InputError, match="share no item_id"):
        common_items(np.array([1, 2]), np.array(["1", "2"]), 2, 2)


@pytest.mark.parametrize("kind", ["int", "str"])
def test_the_duplicate_check_agrees_with_np_unique_and_names_the_file(kind):
    rng = np.random.default_rng(2)
    ids = rng.permutation(1_500_000 if kind == "int" else 100_000)
    ids = ids.astype(str) if kind == "str" else ids
    assert check_unique_ids(ids, "x.parquet") is ids and not has_repeats(ids)
    twice = np.concatenate([ids, ids[-1:]])
    assert has_repeats(twice) == (len(np.unique(twice)) != len(twice))
    with pytest.raises(InputError, match=r"^x.parquet has duplicate item_id values; each item must appear once$"):
        check_unique_ids(twice, "x.parquet")


def test_checked_batches_refuse_nan_rows_by_global_row_after_reading_everything():
    batches = [(None, np.ones((3, 2))), (None, np.array([[1.0, np.nan], [1, 1]])), (None, np.full((2, 2), np.inf))]
    seen = []
    with pytest.raises(InputError, match=r"^f has NaN or Inf values in 3 of 7 rows \(rows 3, 5, 6\)"):
        for _, X in checked_batches(iter(batches), 2, "f"):
            seen.append(len(X))
    assert seen == [3]  # nothing after the first bad batch reaches the caller
    with pytest.raises(InputError, match="has 3 features, but the model is expecting 2"):
        list(checked_batches(iter([(None, np.ones((1, 2))), (None, np.ones((1, 3)))]), 2, "f"))


def test_embedding_batches_fuse_columns_and_may_skip_the_ids(tmp_path):
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 2)).astype(np.float32)
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"item_id": np.arange(5), "a": pa.FixedSizeListArray.from_arrays(a.ravel(), 3),
                             "b": list(b)}), path)
    (ids, X), = io.embedding_batches(path, ("a", "b"))
    (no_ids, Y), = io.embedding_batches(path, ("a", "b"), with_ids=False)
    np.testing.assert_array_equal(ids, np.arange(5))
    assert no_ids is None and X.shape == (5, 5)
    np.testing.assert_array_equal(X, Y)
    np.testing.assert_allclose(np.linalg.norm(X[:, :3], axis=1), 1, rtol=1e-6)


@pytest.mark.parametrize("method", ["rqgmm", "rqkmeans", "prqkmeans"])
def test_in_memory_fingerprint_equals_the_saved_directorys(tmp_path, method):
    X = np.random.default_rng(4).normal(size=(200, 6)).astype(np.float32)
    model = tokenizer_class(method)(levels=2, codebook_size=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    model.embedding_columns_ = ["text", "image"]  # recorded keys are part of the saved config
    model.save(tmp_path / "m")
    assert fingerprint_of(model) == io.model_fingerprint(tmp_path / "m")
    assert fingerprint_of(load(tmp_path / "m")) == io.model_fingerprint(tmp_path / "m")


def test_generation_numbers_read_back_from_the_store_file_names():
    for gen in (1, 3, 123456):
        assert generation_of(generation_file(gen)) == generation_of(delta_file(gen)) == gen
        assert generation_of(export_dir(gen)) == gen
    assert generation_of("catalogue.parquet") is None and generation_of("gen-x.parquet") is None
