"""Properties of the CTR side: content helps cold items, OOV handling, seeding,
early stopping, metric agreement with scikit-learn, shapes, and isolation from
the tokenizers."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from rqgmm.ctr import (
    BACKBONES,
    FactorizationMachine,
    FeatureBuilder,
    FeatureEmbedding,
    FeatureSpec,
    InnerProduct,
    ItemContent,
    ModelConfig,
    TrainConfig,
    make_model,
    predict,
    run_ctr,
    score,
    train,
)
from rqgmm.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
N_USERS, N_ITEMS, N_CLUSTERS = 60, 160, 4
FAST = TrainConfig(lr=1e-2, batch_size=256, max_epochs=6, patience=2, seed=0)
SPEC = FeatureSpec("user_id", "item_id", "label", categorical=("gender",), bag=("genres",), embedding_dim=8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _world(seed: int = 0) -> dict:
    """Users, items, and interactions whose click rate is set by a hidden item cluster.

    Items 0..99 appear in training; items 100..159 are cold and appear only in
    valid and test, so only content can tell their clusters apart.
    """
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, N_CLUSTERS, N_ITEMS)
    cluster_effect = np.array([-2.0, -0.7, 0.7, 2.0])
    user_bias = rng.normal(0, 0.5, N_USERS)
    users = pd.DataFrame({"user_id": np.arange(N_USERS, dtype=np.int64),
                          "gender": rng.choice(["F", "M"], N_USERS)})
    genre_names = ["Action", "Comedy", "Drama"]
    items = pd.DataFrame({"item_id": np.arange(N_ITEMS, dtype=np.int64),
                          "genres": [list(rng.choice(genre_names, rng.integers(1, 3), replace=False))
                                     for _ in range(N_ITEMS)]})

    def frame(n: int, item_pool: np.ndarray) -> pd.DataFrame:
        u, i = rng.integers(0, N_USERS, n), rng.choice(item_pool, n)
        p = 1 / (1 + np.exp(-(cluster_effect[cluster[i]] + user_bias[u])))
        return pd.DataFrame({"user_id": u.astype(np.int64), "item_id": i.astype(np.int64),
                             "label": (rng.random(n) < p).astype(np.int64)})

    warm, cold = np.arange(100), np.arange(100, N_ITEMS)
    codes = np.stack([cluster, rng.integers(0, 8, N_ITEMS)], axis=1).astype(np.int64)
    ids = items["item_id"].to_numpy()
    return {"train": frame(4000, warm), "valid": frame(1000, cold), "test": frame(1500, cold),
            "users": users, "items": items,
            "codes": ItemContent.codes("sid", ids, codes, [N_CLUSTERS, 8]),
            "embeddings": ItemContent.embedding("emb", ids, rng.normal(size=(N_ITEMS, 12)))}


@pytest.fixture(scope="module")
def world() -> dict:
    return _world()


CONTENT = {"none": (), "codes": ("codes",), "embedding": ("embeddings",), "codes+embedding": ("codes", "embeddings")}


def _content(world: dict, variant: str) -> list[ItemContent]:
    return [world[key] for key in CONTENT[variant]]


def _run(world: dict, backbone: str = "fnn", content: str = "none", config: TrainConfig = FAST):
    return run_ctr(world["train"], world["valid"], world["test"], SPEC, users=world["users"], items=world["items"],
                   content=_content(world, content), backbone=backbone,
                   model_config=ModelConfig(hidden=(32, 16)), train_config=config)


def _builder(world: dict, content: str = "none", spec: FeatureSpec = SPEC) -> FeatureBuilder:
    return FeatureBuilder(spec).fit(world["train"], users=world["users"], items=world["items"],
                                    content=_content(world, content))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_code_field_carrying_the_cluster_beats_no_content_on_cold_items(world, backbone):
    none = _run(world, backbone, "none").metrics["auc"]
    codes = _run(world, backbone, "codes").metrics["auc"]
    assert codes > none + 0.1, (none, codes)


def test_unseen_item_shares_oov_row_but_keeps_its_codes(world):
    builder = _builder(world, "codes")
    rows = pd.DataFrame({"user_id": [0, 999], "item_id": [150, 3], "label": [1, 0]})
    col = {name: t.numpy() for name, t in builder.transform(rows).fields.items()}
    assert col["item_id"][0] == 0 and col["item_id"][1] > 0  # item 150 is cold
    assert col["user_id"][1] == 0 and col["gender"][1] == 0  # user 999 is unknown
    expected = world["codes"].values[[150, 3]]
    np.testing.assert_array_equal(np.stack([col["sid_c1"], col["sid_c2"]], axis=1), expected)


def test_vocabularies_come_from_training_rows_only(world):
    builder = _builder(world)
    item_field = next(f for f in builder.fields if f.name == "item_id")
    assert item_field.vocab_size == world["train"]["item_id"].nunique() + 1


def test_bag_pools_known_values_and_ignores_padding_and_unseen(world):
    items = pd.DataFrame({"item_id": [0, 1], "genres": [["A", "B"], ["A", "Zzz"]]})
    train_rows = pd.DataFrame({"user_id": [0], "item_id": [0], "label": [1]})
    spec = FeatureSpec("user_id", "item_id", "label", bag=("genres",))
    builder = FeatureBuilder(spec).fit(train_rows, items=items)
    genres = builder.transform(pd.DataFrame({"user_id": [0, 0], "item_id": [0, 1]})).fields["genres"].numpy()
    assert sorted(genres[0]) == [1, 2] and sorted(genres[1]) == [0, 1]  # "Zzz" never seen in training


def test_ids_plus_embedding_model_has_both_content_inputs(world):
    builder = _builder(world, "codes+embedding")
    kinds = {f.name: f.kind for f in builder.fields}
    assert kinds["sid_c1"] == kinds["sid_c2"] == "categorical" and kinds["emb"] == "dense"
    tensors = builder.transform(world["test"].iloc[:5])
    batch = tensors.batch(slice(None))
    assert batch.dense[0].shape == (5, 12) and tensors.fields["sid_c1"].shape == (5,)


def test_saved_and_reloaded_builder_gives_the_same_tensors(world, tmp_path):
    spec = FeatureSpec("user_id", "item_id", "label", categorical=("gender", "slot"), bag=("genres",),
                       numeric=("price",), embedding_dim=8)
    rng = np.random.default_rng(1)
    items = world["items"].assign(price=rng.random(N_ITEMS))
    frames = [f.assign(slot=rng.integers(0, 3, len(f))) for f in (world["train"], world["test"])]
    builder = FeatureBuilder(spec).fit(frames[0], users=world["users"], items=items,
                                       content=[world["codes"], world["embeddings"]])
    builder.save(tmp_path / "features")
    loaded = FeatureBuilder.load(tmp_path / "features")
    assert loaded.fields == builder.fields
    first, again = builder.transform(frames[1]), loaded.transform(frames[1])
    assert first.fields.keys() == again.fields.keys()
    for name in first.fields:
        torch.testing.assert_close(first.fields[name], again.fields[name])
    for ours, theirs in zip(first.batch(slice(None)).dense, again.batch(slice(None)).dense, strict=True):
        torch.testing.assert_close(ours, theirs)
    model = make_model("ipnn", builder.fields, ModelConfig(hidden=(16,)), seed=0)
    np.testing.assert_array_equal(predict(model, first), predict(model, again))


def test_numeric_field_is_standardised_with_training_moments(world):
    spec = FeatureSpec("user_id", "item_id", "label", numeric=("x",))
    train_rows = world["train"].assign(x=np.arange(len(world["train"]), dtype=float))
    builder = FeatureBuilder(spec).fit(train_rows)
    values = builder.transform(train_rows).fields["x"].numpy()[:, 0]
    assert values.shape == (len(train_rows),)
    assert abs(values.mean()) < 1e-4 and abs(values.std() - 1) < 1e-4


def test_same_seed_gives_identical_predictions_and_another_seed_differs(world):
    first = _run(world, "deepfm", "codes").predictions
    again = _run(world, "deepfm", "codes").predictions
    other = _run(world, "deepfm", "codes", TrainConfig(**{**FAST.__dict__, "seed": 1})).predictions
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_early_stopping_restores_the_best_validation_epoch(world):
    builder = _builder(world)
    train_t, valid_t = builder.transform(world["train"]), builder.transform(world["valid"])
    config = TrainConfig(lr=3e-2, batch_size=128, max_epochs=12, patience=3, seed=0)
    model = make_model("fnn", builder.fields, ModelConfig(hidden=(64,)), seed=0)
    result = train(model, train_t, valid_t, config)
    history = result.valid_auc
    assert result.best_epoch == int(np.argmax(history))
    assert result.best_epoch < len(history) - 1  # this setting overfits: the best is not the last
    assert len(history) == min(config.max_epochs, result.best_epoch + 1 + config.patience)
    restored = score(valid_t.labels.numpy(), predict(result.model, valid_t))["auc"]
    assert restored == pytest.approx(max(history), abs=1e-12)


def test_training_leaves_thread_count_and_global_rng_alone(world):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _run(world, "fnn", "none", TrainConfig(**{**FAST.__dict__, "max_epochs": 1, "num_threads": 2}))
    assert torch.get_num_threads() == 1
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_training_leaves_numpy_global_state_alone_and_repeats_with_its_seed(world):
    torch.manual_seed(7)
    np.random.seed(7)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    config = TrainConfig(**{**FAST.__dict__, "max_epochs": 1})
    first = _run(world, "dcnv2", "codes", config)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    again = _run(world, "dcnv2", "codes", config)
    np.testing.assert_array_equal(first.predictions, again.predictions)
    assert first.training.valid_auc == again.training.valid_auc


@pytest.mark.parametrize("ties", [False, True])
def test_score_equals_sklearn_up_to_rounding(ties):
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 5000), rng.random(5000)
    if ties:  # tied scores count half a win; probabilities at 0 and 1 are clipped by float64's eps
        p = np.round(p, 2)
        p[:20], p[20:40] = 0.0, 1.0
    for labels, probs in ((y, p), (torch.from_numpy(y), torch.from_numpy(p).float())):
        metrics = score(labels, probs)
        expected = np.asarray(probs, dtype=np.float64)
        assert metrics["auc"] == pytest.approx(roc_auc_score(y, expected), rel=1e-12, abs=0)
        assert metrics["logloss"] == pytest.approx(log_loss(y, expected), rel=1e-12, abs=0)


def test_the_scoring_bench_prints_both_timings_and_equal_metrics(capsys):
    from rqgmm.bench.scoring import main

    result = main(["--rows", "3000", "--repeat", "1"])
    assert result["max_relative_difference"] < 1e-12 and result["sklearn_s"] > 0 and result["ours_s"] > 0
    assert '"ratio"' in capsys.readouterr().out


def test_fm_term_equals_the_explicit_pairwise_sum():
    e = torch.randn(5, 4, 3, dtype=torch.float64)
    pairwise = sum((e[:, i] * e[:, j]).sum(-1) for i, j in itertools.combinations(range(4), 2))
    torch.testing.assert_close(FactorizationMachine()(e), pairwise)


def test_inner_product_layer_equals_the_explicit_pairs():
    e = torch.randn(5, 4, 3, dtype=torch.float64)
    pairs = torch.stack([(e[:, i] * e[:, j]).sum(-1) for i, j in itertools.combinations(range(4), 2)], dim=1)
    torch.testing.assert_close(InnerProduct(4).to(torch.float64)(e), pairs)


@pytest.mark.parametrize("backbone,content", itertools.product(sorted(BACKBONES), sorted(CONTENT)))
def test_forward_shapes(world, backbone, content):
    builder = _builder(world, content)
    batch = builder.transform(world["test"].iloc[:7]).batch(slice(None))
    expected_fields = 4 + {"none": 0, "codes": 2, "embedding": 1, "codes+embedding": 3}[content]
    assert len(builder.fields) == expected_fields  # user, gender, item, genres + content
    assert FeatureEmbedding(builder.fields)(batch).shape == (7, expected_fields, 8)
    assert make_model(backbone, builder.fields, ModelConfig(hidden=(16,)))(batch).shape == (7,)


def test_importing_ctr_loads_no_tokenizer_module():
    # A stand-in parent package keeps rqgmm/__init__.py out: this checks ctr's own imports.
    probe = f"""
import sys, types
pkg = types.ModuleType("rqgmm"); pkg.__path__ = [{str(ROOT / "rqgmm")!r}]; sys.modules["rqgmm"] = pkg
import rqgmm.ctr
print(sorted(m for m in sys.modules if m.startswith("rqgmm")))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = eval(out)  # a printed list of module names
    allowed = ("rqgmm", "rqgmm.errors", "rqgmm.files", "rqgmm.runtime", "rqgmm.files.atomic", "rqgmm.files.paths", "rqgmm.runtime.device",
               "rqgmm.runtime.seeding", "rqgmm.runtime.names", "rqgmm.runtime.counting")  # atomics, device
    # names, child seeds, chunked counts
    assert all(m in allowed or m.startswith("rqgmm.ctr") for m in loaded), loaded


def test_importing_ctr_through_the_package_loads_no_tokenizer_module():
    tokenizers = ("gmm", "kmeans", "residual", "vae", "prq")
    probe = "import sys, rqgmm.ctr; print(sorted(m for m in sys.modules if m.startswith('rqgmm')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert not [m for m in eval(out) if m.split(".")[1:2] and m.split(".")[1] in tokenizers], out


def test_unknown_backbone_lists_the_choices(world):
    with pytest.raises(InputError, match=r"unknown backbone 'xgb'; choose one of dcnv2, deepfm, fnn, ipnn"):
        make_model("xgb", _builder(world).fields)


def test_item_missing_from_content_is_refused(world):
    c = world["codes"]
    partial = ItemContent.codes("sid", c.ids[:-10], c.values[:-10], c.codebook_sizes)
    builder = FeatureBuilder(SPEC).fit(world["train"], users=world["users"], items=world["items"], content=[partial])
    with pytest.raises(InputError, match=r"1 item id\(s\) .* missing from the content 'sid' \(first: \['150'\]\)"):
        builder.transform(pd.DataFrame({"user_id": [0], "item_id": [150], "label": [1]}))


@pytest.mark.parametrize("sizes,message", [
    ([2, 8], r"codes at level 1 must lie in \[0, 2\), got values in \[0, 3\]"),
    ([4], r"1 codebook sizes for codes of shape \(160, 2\); pass one size per level"),
])
def test_bad_codes_are_refused_with_a_clear_message(world, sizes, message):
    with pytest.raises(InputError, match=message):
        ItemContent.codes("sid", world["codes"].ids, world["codes"].values, sizes)


def test_non_binary_labels_are_refused(world):
    rows = world["train"].assign(label=world["train"]["label"] * 5)
    with pytest.raises(InputError, match=r"label column 'label' must hold 0 or 1, got values \[0, 5\]|\[5, 0\]"):
        _builder(world).transform(rows)


def test_missing_column_is_named(world):
    spec = FeatureSpec("user_id", "item_id", "label", categorical=("age",))
    with pytest.raises(InputError, match=r"column 'age' is in none of the tables \(interactions, user table, item table\)"):
        FeatureBuilder(spec).fit(world["train"], users=world["users"], items=world["items"])


def test_no_ctr_file_names_a_movielens_column():
    columns = ("genres", "rating", "timestamp", "title", "year", "text", "age", "gender", "occupation", "zip3",
               "zip_code", "user_id", "item_id", "label")
    pattern = re.compile(r"[\"']({})[\"']".format("|".join(columns)))  # as a quoted column name
    for path in (ROOT / "rqgmm" / "ctr").glob("*.py"):
        text = path.read_text()
        assert "genre" not in text.lower() and not pattern.search(text), (path.name, pattern.findall(text))


def test_single_class_validation_is_refused():
    with pytest.raises(InputError, match="AUC needs both clicks and non-clicks"):
        score(np.ones(4), np.full(4, 0.5))


def test_non_finite_predictions_are_refused_in_one_line():
    with pytest.raises(InputError, match=r"^1 of 4 predicted probabilities are NaN or infinite \(the model diverged\)"):
        score(np.array([0, 1, 0, 1]), np.array([0.2, np.nan, 0.4, 0.9]))


# ----------------------------------------------------------------------------- encode once, one table, the trainer

import pyarrow as pa  # noqa: E402

from rqgmm.ctr import EncodedLog, LogColumns, LogEncoder, LogPart, auc  # noqa: E402
from rqgmm.ctr.encoding import ColumnEncoder, padded  # noqa: E402
from rqgmm.ctr.log import ItemTable  # noqa: E402
from rqgmm.data.splits import cut_points, time_order, time_split  # noqa: E402


def test_streamed_column_codes_equal_a_sorted_factorisation():
    values = np.array(["b", "a", None, "c", "b", "zz", None, "a"], dtype=object)
    encoder = ColumnEncoder("x", len(values))
    for start in (0, 3, 5):  # three record batches, each with its own dictionary
        encoder.add(pa.array(values[start:{0: 3, 3: 5, 5: 8}[start]]))
    codes, uniques = encoder.finish()
    reference, distinct = pd.factorize(pd.Series(values), sort=True, use_na_sentinel=False)
    np.testing.assert_array_equal(codes, reference + 1)
    assert uniques.to_pylist() == [None if isinstance(v, float) else v for v in distinct]


@pytest.mark.parametrize("kind", ["int", "str"])
def test_many_chunks_with_new_and_repeated_values_give_the_sorted_codes(kind):
    rng = np.random.default_rng(3)
    values = rng.integers(0, 500, 5000).astype(object if kind == "str" else np.int64)
    if kind == "str":
        values = np.array([f"v{v}" for v in values], dtype=object)
        values[rng.integers(0, 5000, 40)] = None
    encoder, start = ColumnEncoder("x", len(values)), 0
    for size in rng.integers(1, 400, 100):  # chunks of odd sizes, later ones mostly repeating values
        if start < len(values):
            encoder.add(pa.array(values[start:start + size]))
            start += size
    encoder.add(pa.array(values[start:], type=pa.string() if kind == "str" else pa.int64()))
    codes, uniques = encoder.finish()
    reference, distinct = pd.factorize(pd.Series(values), sort=True, use_na_sentinel=False)
    np.testing.assert_array_equal(codes, reference + 1)
    assert uniques.to_pylist() == [None if isinstance(v, float) else v for v in distinct]


@pytest.mark.parametrize("case", ["wide", "negative", "nulls later", "beyond the table", "uint64", "int32"])
def test_integer_ids_through_the_lookup_table_give_the_dictionary_paths_codes(monkeypatch, case):
    """Integer chunks placed through encoding.IntegerPlaces, alone or handed over to the dictionary path
    midway (a chunk with nulls, a range past LOOKUP_SPAN, a type it does not take): the codes and values of a
    sorted factorisation, whichever path each chunk took."""
    from rqgmm.ctr import encoding

    monkeypatch.setattr(encoding, "LOOKUP_SPAN", 1000)
    rng = np.random.default_rng(5)
    chunks = [rng.integers(200, 400, 300), rng.integers(100, 600, 300), rng.integers(0, 900, 300)]
    types = {"int32": pa.int32(), "uint64": pa.uint64()}
    if case == "negative":
        chunks = [c - 500 for c in chunks]
    if case == "beyond the table":
        chunks.append(rng.integers(0, 5000, 300))
    arrays = [pa.array(c, type=types.get(case, pa.int64())) for c in chunks]
    if case == "nulls later":
        arrays.append(pa.array([7, None, 950, 7], type=pa.int64()))
    def encoded():
        encoder = ColumnEncoder("x", sum(len(a) for a in arrays))
        for array in arrays:
            encoder.add(array)
        return encoder.finish()

    codes, uniques = encoded()
    monkeypatch.setattr(encoding, "LOOKUP_SPAN", 0)  # every chunk through the dictionary path
    by_dictionary, its_uniques = encoded()
    np.testing.assert_array_equal(codes, by_dictionary)
    assert uniques.equals(its_uniques) and uniques.type == arrays[0].type
    if case != "nulls later":  # (pandas orders a null among objects its own way)
        reference, distinct = pd.factorize(pd.Series(np.concatenate(chunks)), sort=True)
        np.testing.assert_array_equal(codes, reference + 1)
        assert uniques.to_pylist() == list(distinct)


def test_bags_are_padded_rows_of_their_values():
    lists = [[3, 1], [], None, [2, 2, 5]]
    encoder = ColumnEncoder("tags", 4, bag=True)
    encoder.add(pa.array(lists))
    codes, uniques = encoder.finish()
    assert codes.shape == (4, 3)
    decoded = [[uniques[c - 1].as_py() for c in row if c] for row in codes]
    assert decoded == [[3, 1], [], [], [2, 2, 5]]
    np.testing.assert_array_equal(padded(np.array([7, 8, 9]), np.array([0, 2, 1])), [[0, 0], [7, 8], [9, 0]])
    encoder = ColumnEncoder("tags", 4, bag=True)  # the same rows in two batches: the same codes
    encoder.add(pa.array(lists[:2]))
    encoder.add(pa.array(lists[2:]))
    twice, uniques_twice = encoder.finish()
    np.testing.assert_array_equal(twice, codes)
    assert uniques_twice.to_pylist() == uniques.to_pylist()


def _encoded_world(world) -> tuple[EncodedLog, pd.DataFrame]:
    """The world's rows as one log (train, valid, test in time order), encoded in three record batches."""
    frames = [world[p].assign(timestamp=i) for i, p in enumerate(("train", "valid", "test"))]
    rows = pd.concat(frames, ignore_index=True).merge(world["users"], on="user_id", how="left")
    columns = LogColumns("user_id", "item_id", "label", "timestamp", categorical=("gender",), item_bag=("genres",))
    encoder = LogEncoder(columns, len(rows))
    table = pa.Table.from_pandas(rows[columns.read], preserve_index=False)
    for batch in table.to_batches(max_chunksize=2000):
        encoder.add(batch)
    items = world["items"].set_axis(world["items"]["item_id"].astype(str))
    return encoder.finish(ItemTable.encode(items, "item_id", columns)), rows


def test_encoded_log_splits_like_time_split_and_keeps_training_vocabularies(world):
    log, rows = _encoded_world(world)
    order = time_order(log.sort_keys())
    first, second = cut_points(len(log))
    ordered = log.ordered(order, first)
    expected = time_split(rows, keys=("timestamp", "user_id", "item_id"))
    np.testing.assert_array_equal(rows["label"].to_numpy()[order][:first], expected.train["label"])
    np.testing.assert_array_equal(ordered.labels[first:second], expected.valid["label"])
    # a vocabulary of the training rows: the same partition of values as FeatureBuilder's, 0 for the rest
    builder = FeatureBuilder(FeatureSpec("user_id", "item_id", "label", ("gender",))).fit(expected.train)
    for column in ("user_id", "gender"):
        ours = ordered.codes[column]
        theirs = builder.vocabs[column].lookup(rows[column].to_numpy()[order])
        assert ((ours == 0) == (theirs == 0)).all()
        assert len(set(zip(ours, theirs))) == len(set(ours)) == len(set(theirs))
    seen = np.isin(rows["item_id"].to_numpy()[order], expected.train["item_id"].unique())
    np.testing.assert_array_equal(ordered.items.ids[ordered.item_rows] > 0, seen)


def test_held_out_users_keep_users_never_seen_in_training_apart(world):
    """The bootstrap's test users: one code per user, also for users the training part lacks (index 0 there)."""
    test_rows = world["test"]
    fresh = test_rows["user_id"].isin(test_rows["user_id"].unique()[::2])  # half the test users: new ones
    log, rows = _encoded_world({**world, "test": test_rows.assign(
        user_id=test_rows["user_id"].where(~fresh, test_rows["user_id"] + 10**6))})
    order = time_order(log.sort_keys())
    first, second = cut_points(len(log))
    ordered = log.ordered(order, first)
    test = LogPart(ordered, second, len(rows))
    users = rows["user_id"].to_numpy()[order][second:]
    new = ~np.isin(users, rows["user_id"].to_numpy()[order][:first])
    assert new.any() and (test["user_id"][new] == 0).all()  # the world has test users unseen in training
    codes = test.users()
    assert len(set(zip(codes, users))) == len(set(codes)) == len(set(users))  # the same partition of rows
    with pytest.raises(ValueError, match="held-out rows only"):
        LogPart(ordered, 0, first).users()


def test_encoded_log_and_feature_builder_train_the_same_way(world):
    """The evaluate path (encoded log) and the DataFrame path give the same fields and close AUCs."""
    log, rows = _encoded_world(world)
    ordered = log.ordered(np.arange(len(log)), len(world["train"]))
    n1, n2 = len(world["train"]), len(world["train"]) + len(world["valid"])
    parts = [LogPart(ordered, 0, n1), LogPart(ordered, n1, n2), LogPart(ordered, n2, len(log))]
    spec = FeatureSpec("user_id", "item_id", "label", ("gender",), ("genres",), embedding_dim=8)
    encoded = run_ctr(*parts, spec, content=_content(world, "codes"), model_config=ModelConfig(hidden=(32, 16)),
                      train_config=FAST)
    frames = run_ctr(world["train"], world["valid"], world["test"], spec, users=world["users"], items=world["items"],
                     content=_content(world, "codes"), model_config=ModelConfig(hidden=(32, 16)), train_config=FAST)
    fields, _ = ordered.tensors(spec, _content(world, "codes"), parts)
    assert sorted((f.name, f.vocab_size, f.kind) for f in fields) == \
        sorted((f.name, f.vocab_size, f.kind) for f in frames.builder.fields)
    assert encoded.metrics["auc"] == pytest.approx(frames.metrics["auc"], abs=0.03)


def test_streamed_rows_train_exactly_as_resident_rows(world):
    builder = _builder(world, "codes+embedding")
    tensors = [builder.transform(world[p]) for p in ("train", "valid", "test")]
    results = []
    for resident in (True, False):
        model = make_model("fnn", builder.fields, ModelConfig(hidden=(16,)), seed=0)
        config = TrainConfig(**{**FAST.__dict__, "max_epochs": 2, "resident": resident})
        results.append(predict(train(model, tensors[0], tensors[1], config).model, tensors[2]))
    np.testing.assert_array_equal(*results)


@pytest.mark.parametrize("ties", [False, True])
def test_device_auc_equals_sklearn(ties):
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, 2000), rng.random(2000)
    if ties:
        p = np.round(p, 1)
    assert float(auc(torch.from_numpy(y), torch.from_numpy(p))) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_one_table_equals_per_field_tables_and_embedding_bag(world):
    builder = _builder(world, "codes")
    tensors = builder.transform(world["test"].iloc[:50])
    embedding = FeatureEmbedding(builder.fields)
    out = embedding(tensors.batch(slice(None)))
    weight, columns = embedding.table.weight, tensors.fields
    categorical = [f for f in builder.fields if f.kind == "categorical"]
    offset = 0
    for i, f in enumerate(categorical):  # each field reads its own block of the one table
        torch.testing.assert_close(out[:, i], weight[offset + columns[f.name].long()])
        offset += f.vocab_size
    genres = next(f for f in builder.fields if f.kind == "bag")
    reference = torch.nn.EmbeddingBag(genres.vocab_size, 8, mode="mean", padding_idx=0)
    reference.weight.data = weight[offset:offset + genres.vocab_size].detach().clone()
    torch.testing.assert_close(out[:, len(categorical)], reference(columns[genres.name].long()))


def test_default_batch_and_learning_rate_follow_the_documented_rule():
    cpu, cuda = TrainConfig(), TrainConfig(device="cuda")
    assert cpu.batch_for(80_000) == 1024 and cpu.lr_for(1024) == 4e-3  # MovieLens: as before
    assert cuda.batch_for(4_000_000) == 32768 and cuda.batch_for(10**8) == 65536 and cpu.batch_for(10**8) == 8192
    assert cuda.lr_for(32768) == pytest.approx(4e-3 * np.sqrt(32))
    assert cuda.warmup_for(32768, 122) == 13 and cpu.warmup_for(1024, 80) == 0
    assert TrainConfig(batch_size=300, lr=1e-3).batch_for(10**8) == 300


def test_backbone_names_come_from_the_registry(capsys):
    from rqgmm.cli import main
    from rqgmm.evaluate.config import EvaluateConfig

    assert EvaluateConfig().backbones == tuple(BACKBONES)
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert ",".join(BACKBONES) in capsys.readouterr().out.replace("\n", "").replace(" ", "")


from rqgmm.ctr import log as ctr_log  # noqa: E402


def test_remapped_equals_take_in_place_only_on_the_logs_own_int32_copy(monkeypatch):
    monkeypatch.setattr("rqgmm.ctr.encoding.REMAP_ROWS", 5)  # several chunks of remap_in_place
    rng = np.random.default_rng(0)
    remap = rng.integers(0, 9, 12).astype(np.int32)
    for shape in ((0,), (7,), (23,), (11, 3)):
        values = rng.integers(0, 12, shape).astype(np.int32)
        expected = np.take(remap, values)
        copy = values.copy()
        out = ctr_log.remapped(remap, copy)
        assert out is copy and out.dtype == np.int32 and np.array_equal(out, expected)
        wide = values.astype(np.int64)
        out = ctr_log.remapped(remap, wide)  # another dtype: a new array, the input unchanged
        assert out.dtype == np.int32 and np.array_equal(out, expected) and np.array_equal(wide, values)


def test_taken_equals_take_for_either_index_width(monkeypatch):
    monkeypatch.setattr(ctr_log, "REMAP_CHUNK", 4)
    rng = np.random.default_rng(1)
    for values in (rng.normal(size=10), rng.integers(0, 5, (10, 3)).astype(np.int32), np.zeros(0, np.int8)):
        order = rng.permutation(len(values))
        for index in (order, order.astype(np.int32)):
            out = ctr_log.taken(values, index)
            assert out.dtype == values.dtype and np.array_equal(out, np.take(values, order, axis=0))
