"""Files written by the previous release (before the package moved into folders) still load and resume.

The fixtures under ``fixtures/previous_release`` were written by commit c50df11 with:
``rqgmm fit emb.npy --method rqgmm --levels 2 --codebook-size 4 --seed 0``, ``rqgmm encode ... --unique``,
``rqgmm publish`` of the same 120 items, and ``rqgmm evaluate`` of ``synthetic.write_synthetic``'s log (kept in
inputs/: regenerated with another pandas it would differ by a byte, and resuming checks the bytes)
with ``EVALUATE`` below; ``emb`` is ``default_rng(0).normal(size=(120, 6))`` as float32.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

import rqgmm
from rqgmm.cli import main
from rqgmm.ids.codes import read_codes

FIXTURES = Path(__file__).parent / "fixtures" / "previous_release"
EVALUATE = ["--embedding", "text_emb", "--methods", "rqkmeans", "--levels", "2", "--codebook-size", "4",
            "--variants", "none,ids", "--backbones", "fnn", "--seeds", "1", "--quick", "--quiet"]


def embeddings() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)


def test_a_model_of_the_previous_release_loads_and_gives_its_codes():
    model = rqgmm.load(FIXTURES / "model")
    table = read_codes(str(FIXTURES / "codes.parquet"))
    assert np.array_equal(np.asarray(model.encode(embeddings())), table.codes)


def test_a_store_of_the_previous_release_reports_and_takes_a_new_generation(tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(FIXTURES / "store", store)
    assert main(["report", str(store), "--json"]) == 0
    first = pd.read_parquet(store / "generations" / "gen-000001.parquet")
    x = np.concatenate([embeddings(), np.random.default_rng(1).normal(size=(10, 6)).astype(np.float32)])
    catalogue = tmp_path / "catalogue.parquet"
    pd.DataFrame({"item_id": np.arange(len(x)), "embedding": list(x)}).to_parquet(catalogue)
    assert main(["publish", str(FIXTURES / "model"), str(catalogue), "--store", str(store), "--quiet"]) == 0
    second = pd.read_parquet(store / "generations" / "gen-000002.parquet")
    kept = second.set_index("item_id").loc[first["item_id"]].reset_index()
    assert kept[first.columns].equals(first)  # every published item keeps its full ID
    assert len(second) == 130


def test_an_evaluate_output_of_the_previous_release_resumes_without_rerunning(tmp_path):
    out = tmp_path / "out"
    shutil.copytree(FIXTURES / "evaluate", out)
    rows, items = FIXTURES / "inputs" / "interactions.parquet", FIXTURES / "inputs" / "items.parquet"
    before = {p.name: p.read_bytes() for p in (out / "runs").iterdir()}
    assert main(["evaluate", str(rows), "--items", str(items), "--out", str(out), *EVALUATE]) == 0
    after = {p.name: p.read_bytes() for p in (out / "runs").iterdir()}
    assert after == before  # every run was found finished: nothing refitted, nothing retrained
    old = json.loads((FIXTURES / "evaluate" / "results.json").read_text())["records"]
    new = json.loads((out / "results.json").read_text())["records"]
    # the same records; a comparison may carry keys added since (head to head, test rows and users behind it)
    derived = ("comparison", "diagnostic")  # read from the stored runs on every call, not runs themselves
    assert [r for r in new if r["kind"] not in derived] == [r for r in old if r["kind"] not in derived]
    assert {r["kind"] for r in new} - {r["kind"] for r in old} == {"diagnostic"}  # the previous release had none
    comps = [r for r in new if r["kind"] == "comparison"]
    assert [{k: c[k] for k in was} for c, was in zip(comps, (r for r in old if r["kind"] == "comparison"))] == \
        [r for r in old if r["kind"] == "comparison"] and len(comps) == sum(r["kind"] == "comparison" for r in old)


def test_an_output_at_the_previous_default_shape_is_refused_with_the_flags_that_resume_it(tmp_path, capsys):
    """The previous release's default shape was 2 x 128; its outputs made without shape flags are refused under
    today's catalogue default, in one line that says so and names the flags that resume them."""
    from rqgmm.evaluate.grid import MANIFEST, RecordStore, fingerprint
    from rqgmm.ids.shape import default_shape

    out = tmp_path / "out"
    shutil.copytree(FIXTURES / "evaluate", out)
    manifest = json.loads((out / "runs" / MANIFEST).read_text())
    settings = dict(manifest["settings"], levels=2, codebook_size=128)  # as the old default wrote them
    (out / "runs" / MANIFEST).write_text(json.dumps({"fingerprint": fingerprint(settings), "settings": settings}))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    rows, items = FIXTURES / "inputs" / "interactions.parquet", FIXTURES / "inputs" / "items.parquet"
    no_shape = [arg for arg in EVALUATE if arg not in ("--levels", "2", "--codebook-size", "4")]
    capsys.readouterr()
    assert main(["evaluate", str(rows), "--items", str(items), "--out", str(out), *no_shape]) == 2
    err = capsys.readouterr().err.strip()
    n_items = len(pd.read_parquet(items))
    levels, k = default_shape(n_items)
    assert err.splitlines() == [err] and "previous default ID shape, 2 x 128" in err, err
    assert f"now follows the catalogue ({levels} x {k} for {n_items:,} items)" in err, err
    assert "pass --levels 2 --codebook-size 128 to resume those runs" in err, err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing written
    RecordStore(out, settings).check()  # with those flags the settings are the stored ones: it resumes
