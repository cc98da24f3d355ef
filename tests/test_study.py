"""`rqgmm benchmark` end to end on a small slice, and the study's data hygiene."""

import json

import numpy as np
import pytest

from rqgmm.bench import study as study_module
from rqgmm.bench.study import Study, StudyConfig
from rqgmm.cli import main
from rqgmm.ctr import TrainConfig
from rqgmm.tokenizer import methods

SMALL = dict(seeds=(0,), max_items=200, embedder="hashing-32", settings=((2, 16),), ctr_setting=(2, 16),
             sweep_sizes=(8, 16), train=TrainConfig(max_epochs=2))


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    code = main(["benchmark", "--quick", "--max-items", "200", "--embedder", "hashing-32", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_outputs_written(bench_dir):
    names = {p.name for p in bench_dir.iterdir()}
    assert {"results.json", "report.md"} <= names
    pngs = [n for n in names if n.endswith(".png")]
    assert any(n.startswith("auc_") for n in pngs) and any(n.startswith("sweep_") for n in pngs)
    assert any(n.startswith("utilization_") for n in pngs) and any(n.startswith("em_history_") for n in pngs)


def test_every_variant_and_backbone_in_results(bench_dir):
    records = json.loads((bench_dir / "results.json").read_text())
    required = {"dataset", "split", "tokenizer", "backbone", "seed", "auc", "logloss", "rmse", "utilization",
                "prefix_utilization", "collision_rate", "icr", "gini", "perplexity", "n_items", "levels",
                "codebook_size"}
    assert all(required <= set(r) for r in records)
    ctr = {(r["split"], r["tokenizer"], r["backbone"]) for r in records if r["kind"] == "ctr"}
    variants = {"none", "embedding", *methods()}
    assert ctr == {(s, v, b) for s in ("time", "random") for v in variants for b in ("fnn", "deepfm", "dcnv2")}
    assert all(0.0 <= r["auc"] <= 1.0 for r in records if r["kind"] == "ctr")
    report = (bench_dir / "report.md").read_text()
    for variant in variants:
        assert variant in report


def test_existing_foreign_directory_is_refused(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    code = main(["benchmark", "--quick", "--out", str(tmp_path)])
    assert code == 2
    assert "is a directory with no results.json: not an earlier rqgmm output" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_no_test_row_reaches_fitting_or_training(monkeypatch):
    """Tokenizers see item vectors only; CTR training sees train rows before the cut-off."""
    seen_fit, seen_ctr = [], []
    real_fit, real_run = study_module.fit_tokenizer, study_module.run_ctr

    def spy_fit(method, levels, size, seed, content):
        seen_fit.append(content.vectors.shape)
        return real_fit(method, levels, size, seed, content)

    def spy_run(train, valid, test, users, items, **kwargs):
        seen_ctr.append((train, valid, test))
        return real_run(train, valid, test, users, items, **kwargs)

    monkeypatch.setattr(study_module, "fit_tokenizer", spy_fit)
    monkeypatch.setattr(study_module, "run_ctr", spy_run)
    config = StudyConfig(**{**SMALL, "backbones": ("fnn",), "splits": ("time",)})
    Study(config).run()
    n_items = seen_fit[0][0]
    assert all(shape[0] == n_items for shape in seen_fit)
    for train, valid, test in seen_ctr:
        assert train["timestamp"].max() <= valid["timestamp"].min() <= test["timestamp"].max()
        assert train["timestamp"].max() <= test["timestamp"].min()
        keys = lambda f: set(zip(f["user_id"], f["item_id"], f["timestamp"]))  # noqa: E731
        assert not keys(train) & keys(test) and not keys(valid) & keys(test) and not keys(train) & keys(valid)


@pytest.mark.realdata
def test_real_data_and_real_embedding_model():
    config = StudyConfig(**{**SMALL, "embedder": "minilm", "max_items": 120, "backbones": ("fnn",),
                            "splits": ("time",), "sweep_sizes": (16,)})
    records = Study(config).run()
    tok = [r for r in records if r["kind"] == "tokenizer"]
    assert {r["tokenizer"] for r in tok} == set(methods())
    assert all(r["n_items"] == 120 for r in tok)
    assert all(np.isfinite(r["auc"]) for r in records if r["kind"] == "ctr")
