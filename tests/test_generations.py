"""The generations store: published IDs never move, exports agree with the store, bad input is refused.

Each test checks a property a user of the store relies on: a published item's
full ID is the same in every later generation whatever model publishes the new
items; full IDs are distinct; a cap holds and its fallbacks go to the nearest
prefix with room; the trie accepts exactly the published IDs; a refused run
exits 2 with one line and changes nothing; a killed publish leaves the
previous generation readable.
"""

import hashlib
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_mixture
from test_kill import _write_killed_after_step
from hypothesis import given, settings
from hypothesis import strategies as st

import rqgmm
from rqgmm.store import allocation as alloc
from rqgmm import cli
from rqgmm.store import generations
from rqgmm.store.exports import read_lookup, read_vocabulary, vocabulary
from rqgmm.store.generations import Store, export_dir, generation_file
from rqgmm.store.nearest import nearest_codes
from rqgmm.ids.trie import PrefixTrie

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_FIRST = 300


def write_catalogue(path: Path, ids: np.ndarray, X: np.ndarray) -> Path:
    pq.write_table(pa.table({"item_id": ids, "embedding": list(X.astype(np.float32))}), path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Embeddings of 450 items, two catalogues (the second drops 10 items and adds 150) and three models."""
    d = tmp_path_factory.mktemp("store-data")
    X = make_mixture(n_per=75, k=6, d=8, seed=4)[0].astype(np.float32)
    ids = np.arange(1000, 1000 + len(X))
    write_catalogue(d / "c1.parquet", ids[:N_FIRST], X[:N_FIRST])
    second = np.r_[np.arange(10, N_FIRST), np.arange(N_FIRST, len(X))]
    write_catalogue(d / "c2.parquet", ids[second], X[second])
    first = rqgmm.RQGMM(2, 4, random_state=0, progress=False).fit(X[:N_FIRST])
    first.save(d / "m1")
    rqgmm.RQGMM(2, 4, random_state=0, progress=False).fit(X, init=first).save(d / "warm")
    rqgmm.RQGMM(2, 4, random_state=7, progress=False).fit(X).save(d / "other-seed")
    rqgmm.RQKMeans(2, 4, random_state=0, progress=False).fit(X).save(d / "kmeans")
    return {"dir": d, "X": X, "ids": ids, "second": second}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def publish(capsys, data, store, model, catalogue, *flags):
    d = data["dir"]
    code, out, err = run(capsys, "publish", d / model, d / catalogue, "--store", store, *flags)
    assert code == 0, err
    return json.loads(out)


def by_item(gen) -> dict:
    return {item: tuple(row) for item, row in zip(gen.item_ids.tolist(), gen.full_ids().tolist())}


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != generations.LOCK}


# ============================================================ append-only rules


@pytest.mark.parametrize("refit", ["warm", "other-seed"])
def test_published_ids_never_move_whatever_model_encodes_the_new_items(tmp_path, capsys, data, refit):
    store = tmp_path / "store"
    publish(capsys, data, store, "m1", "c1.parquet")
    counts = publish(capsys, data, store, refit, "c2.parquet")
    s = Store.open(store)
    first, second = by_item(s.read(1)), by_item(s.read(2))
    assert all(second[item] == full for item, full in first.items())  # retired ones too: marked, never deleted
    gen = s.read(2)
    retired = set(gen.item_ids[~gen.live].tolist())
    assert retired == set(data["ids"][:10].tolist()) and counts["retired"] == 10 and counts["new"] == 150
    assert len(set(map(tuple, gen.full_ids().tolist()))) == len(gen)  # every full ID distinct
    new = gen.born == 2
    X_new = data["X"][N_FIRST:]
    assert np.array_equal(gen.codes[new], rqgmm.load(data["dir"] / refit).encode(X_new))  # no cap: the model's codes
    code, out, err = run(capsys, "report", store, "--json")
    assert code == 0, err
    churn = json.loads(out)["churn"]
    assert churn == {"parent_items": N_FIRST, "full_id_changed": 0.0, "changed_items": 0, "missing_items": 0}
    code, out, err = run(capsys, "report", store / generation_file(1), "--json")  # a generation by its file
    assert code == 0 and json.loads(out)["generation"] == 1 and json.loads(out)["churn"] is None, err


def test_suffixes_are_never_reused_unless_asked(tmp_path, capsys, data):
    d = data["dir"]
    X, ids = data["X"], data["ids"]
    write_catalogue(tmp_path / "a.parquet", ids[:100], X[:100])
    write_catalogue(tmp_path / "b.parquet", ids[50:100], X[50:100])  # 50 retired
    # the retired items' embeddings again, under new ids: they land in the retired items' prefixes
    write_catalogue(tmp_path / "c.parquet", np.r_[ids[50:100], ids[:50] + 10_000], np.r_[X[50:100], X[:50]])
    for reuse in (False, True):
        store = tmp_path / f"store-{reuse}"
        for catalogue in ("a", "b"):
            assert run(capsys, "publish", d / "m1", tmp_path / f"{catalogue}.parquet", "--store", store)[0] == 0
        flags = ["--reuse-retired"] if reuse else []
        assert run(capsys, "publish", d / "m1", tmp_path / "c.parquet", "--store", store, *flags)[0] == 0
        gen = Store.open(store).read()
        old, new = gen.born < 3, gen.born == 3
        old_slots = set(map(tuple, gen.full_ids()[old].tolist()))
        new_slots = set(map(tuple, gen.full_ids()[new].tolist()))
        live_ids = gen.full_ids()[gen.live]
        assert len(set(map(tuple, live_ids.tolist()))) == len(live_ids)
        if reuse:
            assert new_slots & old_slots  # the retired items' full IDs went to new items
            assert not new_slots & set(map(tuple, gen.full_ids()[old & gen.live].tolist()))
        else:
            assert not new_slots & old_slots


def test_a_retired_item_that_comes_back_keeps_its_full_id(tmp_path, capsys, data):
    store = tmp_path / "store"
    publish(capsys, data, store, "m1", "c1.parquet")
    publish(capsys, data, store, "m1", "c2.parquet")
    counts = publish(capsys, data, store, "other-seed", "c1.parquet")
    s = Store.open(store)
    assert counts["revived"] == 10 and counts["new"] == 0 and counts["retired"] == 150
    first, third = by_item(s.read(1)), by_item(s.read(3))
    assert all(third[item] == full for item, full in first.items())


# ============================================================ capacity


def test_cap_holds_and_fallbacks_go_to_the_nearest_prefix_with_room(tmp_path, capsys, data):
    store, cap = tmp_path / "store", 25
    counts = publish(capsys, data, store, "m1", "c1.parquet", "--max-per-prefix", cap)
    s = Store.open(store)
    gen = s.read()
    keys = alloc.prefix_keys(gen.codes, [4, 4])
    _, load = np.unique(keys, return_counts=True)
    assert load.max() <= cap and gen.suffix.max() < cap
    model = rqgmm.load(data["dir"] / "m1")
    own = model.encode(data["X"][:N_FIRST])
    moved = (gen.codes != own).any(1)
    assert counts["fallbacks"] == int(moved.sum()) == int(gen.fallback.sum()) > 0
    assert np.array_equal(moved, gen.fallback)
    # Stability of the placement: no moved item would rather be in a prefix that still has room.
    full = set(np.unique(keys)[load >= cap].tolist())
    cand, cost = nearest_codes(model, data["X"][:N_FIRST][moved], beam=16)
    cand_keys = alloc.prefix_keys(cand.reshape(-1, 2), [4, 4]).reshape(cost.shape)
    chosen = keys[moved]
    for row in range(len(chosen)):
        better = cand_keys[row, : int(np.flatnonzero(cand_keys[row] == chosen[row])[0])]
        assert set(better.tolist()) <= full


def test_nearest_codes_match_a_brute_force_search(data):
    model = rqgmm.load(data["dir"] / "m1")
    X = data["X"][:20]
    every = np.array(list(itertools.product(range(4), range(4))))
    cost = ((X[:, None, :].astype(np.float64) - model.decode(every)[None].astype(np.float64)) ** 2).sum(-1)
    codes, got = nearest_codes(model, X, beam=4)  # the beam covers every prefix: exact
    assert np.allclose(np.sort(cost, 1), got)
    assert np.allclose(np.take_along_axis(cost, alloc.prefix_keys(codes.reshape(-1, 2), [4, 4]).reshape(20, 16), 1),
                       got)


def test_placement_rounds_fill_rooms_nearest_first():
    """Three items want the same prefix with one slot: the nearest gets it, the others their next choice."""
    slots = alloc.store_slots(np.array([0, 0, 1, 1, 5]), np.array([0, 1, 0, 1, 0]), np.ones(5, dtype=bool),
                              reuse=False, sizes=[8])
    keys = np.array([0, 0, 0, 0])  # prefixes 0 and 1 hold 2 slots each; cap 3 leaves one in each
    own = np.array([4.0, 1.0, 3.0, 2.0])
    table = {0: ([1, 5, 2], [5.0, 6.0, 7.0]), 2: ([1, 2, 5], [1.0, 2.0, 3.0]), 3: ([1, 2, 5], [0.5, 2.0, 3.0])}

    def candidates(rows, beam):
        return (np.array([table[r][0] for r in rows.tolist()]), np.array([table[r][1] for r in rows.tolist()]))

    out, fallback = alloc.place(keys, slots, 3, own, candidates, full_beam=1)
    assert out.tolist() == [5, 0, 2, 1] and fallback.tolist() == [True, False, True, True]


# ============================================================ exports


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 2)), max_size=25),
       st.lists(st.tuples(st.integers(-1, 3), st.integers(-1, 4), st.integers(-1, 3)), min_size=1, max_size=30))
def test_trie_accepts_exactly_the_published_ids(published, queries):
    sizes = [3, 4, 3]
    ids = np.array(published, dtype=np.int64).reshape(-1, 3)
    trie = PrefixTrie.build(ids, sizes)
    truth = set(published)
    q = torch.tensor(queries)
    assert trie.accepts(q).tolist() == [tuple(row) in truth for row in queries]
    for t in range(3):
        mask = trie.allowed_next(q[:, :t].clamp(min=0))
        for row, allowed in zip(q[:, :t].clamp(min=0).tolist(), mask.tolist()):
            expect = {p[t] for p in truth if list(p[:t]) == row}
            assert {v for v in range(sizes[t]) if allowed[v]} == expect
    assert sorted(map(tuple, trie.full_ids().tolist())) == sorted(truth)


def test_exports_read_back_as_the_store(tmp_path, capsys, data):
    store = tmp_path / "store"
    publish(capsys, data, store, "m1", "c1.parquet")
    publish(capsys, data, store, "warm", "c2.parquet")
    s = Store.open(store)
    gen = s.read()
    exports = store / export_dir(2)
    ids, items = read_lookup(exports / "lookup.parquet", 2, True)
    assert all(len(group) == 1 for group in items)
    assert dict(zip(map(tuple, ids.tolist()), (g[0] for g in items))) == \
        {full: item for item, full in by_item(gen.select(np.flatnonzero(gen.live))).items()}
    trie = PrefixTrie.read(exports / "trie.parquet")
    assert trie.accepts(torch.from_numpy(gen.full_ids()[gen.live])).all()
    assert not trie.accepts(torch.from_numpy(gen.full_ids()[~gen.live])).any()  # retired: never generated
    vocab = read_vocabulary(exports / "vocab.txt")
    assert vocab == vocabulary(list(trie.vocab_sizes)) and vocab[:2] == ["<a_0>", "<a_1>"] and "<c_0>" in vocab
    first = read_vocabulary(store / export_dir(1) / "vocab.txt")
    assert vocab[: len(first)] == first  # token ids never move between generations


def test_without_suffix_the_lookup_is_one_to_many_and_reported(tmp_path, capsys, data):
    store = tmp_path / "store"
    counts = publish(capsys, data, store, "m1", "c1.parquet", "--no-suffix")
    gen = Store.open(store).read()
    _, items = read_lookup(store / export_dir(1) / "lookup.parquet", 2, False)
    shared = sum(len(g) > 1 for g in items)
    assert sorted(itertools.chain(*items)) == sorted(gen.item_ids.tolist())
    code, out, _ = run(capsys, "report", store, "--json")
    assert shared > 0 and counts["one_to_many"] == shared == json.loads(out)["load"]["one_to_many_ids"]


def test_report_head_tail_allocation(tmp_path, capsys, data):
    store = tmp_path / "store"
    publish(capsys, data, store, "m1", "c1.parquet")
    gen = Store.open(store).read()
    head_items = gen.item_ids[:30]  # 10% of 300 live items, each seen 5 times; 3 others once
    log = np.r_[np.repeat(head_items, 5), gen.item_ids[100:103]]
    pq.write_table(pa.table({"item": log}), tmp_path / "log.parquet")
    code, out, err = run(capsys, "report", store, "--interactions", tmp_path / "log.parquet", "--item", "item",
                         "--json")
    assert code == 0, err
    got = json.loads(out)["head_tail"]
    expect = len(np.unique(gen.codes[:30, 0]))
    assert got["head_items"] == 30 and got["levels"][0]["head_prefixes"] == expect
    assert got["levels"][0]["tail_prefixes"] == len(np.unique(gen.codes[30:, 0]))


# ============================================================ bad input and safety


def assert_refused(capsys, store: Path, argv, expect: str):
    before = snapshot(store) if store.exists() else None
    code, out, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("rqgmm: error: "), err
    assert expect in lines[0], lines[0]
    assert (snapshot(store) if store.exists() else None) == before


@pytest.fixture
def published(tmp_path, capsys, data):
    store = tmp_path / "store"
    publish(capsys, data, store, "m1", "c1.parquet")
    return store


def test_refusals(tmp_path, capsys, data, published):
    d, X, ids = data["dir"], data["X"], data["ids"]
    pub = ["publish", d / "m1"]
    write_catalogue(tmp_path / "dup.parquet", np.r_[ids[:5], ids[:1]], X[:6])
    assert_refused(capsys, published, [*pub, tmp_path / "dup.parquet", "--store", published], "duplicate item_id")
    bad = X[:20].copy()
    bad[7, 3] = np.nan
    write_catalogue(tmp_path / "nan.parquet", ids[:20], bad)
    assert_refused(capsys, published, [*pub, tmp_path / "nan.parquet", "--store", published], "NaN or Inf")
    assert_refused(capsys, published, ["publish", d / "kmeans", d / "c2.parquet", "--store", published],
                   "publish with a model of the store's method")
    assert_refused(capsys, published, [*pub, d / "c2.parquet", "--store", published, "--max-per-prefix", 2],
                   "--max-per-prefix 2 is below the load of prefix")
    fresh = tmp_path / "fresh"
    assert_refused(capsys, fresh, [*pub, tmp_path / "nan.parquet", "--store", fresh], "NaN or Inf")
    assert not fresh.exists()  # a refused first publish leaves no store behind


@pytest.mark.parametrize("damage, expect", [
    ("manifest-json", "manifest.json is damaged (not valid JSON"),
    ("manifest-edit", "manifest.json is damaged (its content does not match its checksum"),
    ("missing", "gen-000001.parquet is missing from the store"),
    ("edited", "gen-000001.parquet does not match its checksum"),
])
def test_a_damaged_store_is_refused_naming_the_file(capsys, data, published, damage, expect):
    manifest = published / "manifest.json"
    gen_file = published / generation_file(1)
    if damage == "manifest-json":
        manifest.write_text(manifest.read_text()[:-20])
    elif damage == "manifest-edit":
        manifest.write_text(manifest.read_text().replace('"max_per_prefix": null', '"max_per_prefix": 5'))
    elif damage == "missing":
        gen_file.unlink()
    else:
        table = pq.read_table(gen_file)
        pq.write_table(table.set_column(1, "c1", pa.array(np.zeros(len(table), dtype=np.int64))), gen_file)
    d = data["dir"]
    assert_refused(capsys, published, ["publish", d / "m1", d / "c2.parquet", "--store", published], expect)
    assert_refused(capsys, published, ["report", published], expect)


def test_a_second_publisher_is_refused_by_the_lock(capsys, data, published):
    d = data["dir"]
    with generations.locked(published):
        assert_refused(capsys, published, ["publish", d / "m1", d / "c2.parquet", "--store", published],
                       "another publish holds the lock")
    publish(capsys, data, published, "m1", "c2.parquet")  # released: the next one goes through


def _publish_killed_after_step(argv, step: int) -> bool:
    """Run the publish in a forked child that SIGKILLs itself right after its step-th file-system change."""

    def run_publish():
        if cli.main([str(a) for a in argv]) != 0:
            raise RuntimeError("publish failed")

    return _write_killed_after_step(run_publish, step)


def test_a_publish_killed_at_any_step_leaves_the_previous_generation_intact(tmp_path, capsys, data, published):
    d = data["dir"]
    reference = tmp_path / "reference"
    shutil.copytree(published, reference)
    publish(capsys, data, reference, "warm", "c2.parquet")
    want = {1: by_item(Store.open(published).read()), 2: by_item(Store.open(reference).read())}
    steps = 0
    for step in range(1, 40):
        store = tmp_path / f"step{step}"
        shutil.copytree(published, store)
        if not _publish_killed_after_step(["publish", d / "warm", d / "c2.parquet", "--store", store, "--quiet"],
                                          step):
            break
        steps += 1
        s = Store.open(store)
        current = s.current["generation"]
        assert by_item(s.read()) == want[current], f"step {step}"
        assert by_item(s.read(1)) == want[1]
        publish(capsys, data, store, "warm", "c2.parquet")  # the store works on: the next publish succeeds
        assert not [p for p in store.rglob("*") if ".tmp-" in p.name], f"step {step}: the kill's temporaries remain"
        assert by_item(Store.open(store).read()) == want[2] if current == 1 else True
    assert steps >= 6  # generation, delta, exports, manifest: several writes and renames each
