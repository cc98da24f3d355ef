"""`rqgmm evaluate` end to end on a synthetic log, its data hygiene, and its one-line refusals."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rqgmm.evaluate import run as evaluate_module
from rqgmm.evaluate import tokenizer_stage
from rqgmm.evaluate.report import render_report
from rqgmm.tokenizers.base import methods
from rqgmm.evaluate.run import Evaluation
from rqgmm.evaluate.config import config_from
from rqgmm.evaluate.inputs import check_inputs
from rqgmm.evaluate.slices import SLICES, popularity_slices
from rqgmm.cli import main
from rqgmm.ctr import BACKBONES
from rqgmm.ctr.log import EncodedLog
from synthetic import synthetic_log, write_synthetic

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["--categorical", "hour,brand", "--bag", "tags,recent", "--numeric", "price,dwell",
          "--embedding", "text_emb", "--embedding", "image_emb"]
SMALL = ["--levels", "2", "--codebook-size", "4", "--methods", "rqkmeans", "--seeds", "2", "--quick"]


@pytest.fixture(scope="module")
def log_files(tmp_path_factory) -> tuple[Path, Path]:
    return write_synthetic(tmp_path_factory.mktemp("log"))


@pytest.fixture(scope="module")
def evaluated(log_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    command = [sys.executable, "-m", "rqgmm", "evaluate", str(log_files[0]), "--items", str(log_files[1]),
               "--out", str(out), *FIELDS, *SMALL, "--quiet"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (out.parent / "stderr.txt").write_text(done.stderr)
    return out


def test_quiet_prints_the_verdict_and_nothing_else(evaluated):
    said = (evaluated.parent / "stderr.txt").read_text().splitlines()
    assert said and "Recommendation (side fields):" in said[0]
    assert any("verdict (" in line for line in said) and any("Test rows behind each interval" in line for line in said)
    assert not any("wrote" in line or "resuming" in line for line in said)  # INFO lines stay out under --quiet


def test_writes_results_report_and_plots(evaluated):
    names = {p.name for p in evaluated.iterdir()}
    assert {"results.json", "report.md"} <= names
    assert {"differences_interactions_side_fields.png", "differences_interactions_content_only.png"} <= names
    report = (evaluated / "report.md").read_text()
    assert report.index("## Verdict") < report.index("## Settings") and "Holm-corrected" in report
    assert "bootstrap over test users" in report  # two seeds: bootstrap intervals, and the report says so


def test_report_shows_the_command_as_typed(evaluated, log_files):
    typed = ["python", "-m", "rqgmm", "evaluate", str(log_files[0]), "--items", str(log_files[1]),
             "--out", str(evaluated), *FIELDS, *SMALL, "--quiet"]
    assert f"- command: `{shlex.join(typed)}`" in (evaluated / "report.md").read_text()


def test_records_carry_every_variant_backbone_regime_and_slice(evaluated):
    records = json.loads((evaluated / "results.json").read_text())["records"]
    ctr = [r for r in records if r["kind"] == "ctr"]
    combos = {(r["regime"], r["label"], r["backbone"]) for r in ctr}
    labels = ("none", "embedding", "ids (rqkmeans)", "ids+embedding (rqkmeans)")
    assert combos == {(g, v, b) for g in ("side fields", "content only") for v in labels for b in BACKBONES}
    assert all(set(r["slices"]) == set(SLICES) and 0 <= r["auc"] <= 1 for r in ctr)
    assert {r["seed"] for r in ctr} == {0, 1}
    costs = {r["label"]: (r["content_parameters"], r["bytes_per_item"]) for r in ctr}
    assert costs["none"] == (0, 0) and costs["embedding"][1] == 4 * (8 + 6)  # two float32 modalities
    assert costs["ids+embedding (rqkmeans)"][0] == costs["ids (rqkmeans)"][0] + costs["embedding"][0]
    report = (evaluated / "report.md").read_text()
    assert "regime: content only" in report and "ids+embedding (rqkmeans) − embedding" in report
    assert "fused (each modality L2-normalised, then concatenated)" in report


def test_no_test_row_reaches_tokenizer_fitting_or_ctr_training(monkeypatch):
    interactions, items = synthetic_log()
    config = config_from(dict(categorical="hour,brand", bag="tags", embedding=["text_emb", "image_emb"],
                              methods="rqkmeans", backbones="fnn", variants="none,ids+embedding", levels=2,
                              codebook_size=4, seeds=1, quick=True))
    fitted, trained = [], []
    real_fit, real_run = tokenizer_stage.fit_tokenizer, evaluate_module.run_ctr
    monkeypatch.setattr(tokenizer_stage, "fit_tokenizer",
                        lambda method, X, *a, **k: fitted.append(X.shape) or real_fit(method, X, *a, **k))
    monkeypatch.setattr(evaluate_module, "run_ctr",
                        lambda tr, va, te, *a, **k: trained.append((tr, va, te)) or real_run(tr, va, te, *a, **k))
    real_ordered = EncodedLog.ordered  # the CTR task drops the times once ordered; kept here to inspect the parts
    monkeypatch.setattr(EncodedLog, "ordered", lambda log, *a, **k: real_ordered(log, *a, **{**k, "times": True}))
    Evaluation(check_inputs(interactions, items, config), config).run()
    assert fitted == [(len(items), 8 + 6)]  # item vectors only, never a row of the log
    cut = np.sort(interactions["timestamp"].to_numpy())[int(0.8 * len(interactions)) - 1]
    for train, valid, test in trained:
        assert train["timestamp"].max() <= valid["timestamp"].min() and valid["timestamp"].max() <= test["timestamp"].min()
        assert train["timestamp"].max() <= cut and len(train) == int(0.8 * len(interactions))


def test_popularity_slices_follow_training_counts():
    train = np.array([1] * 10 + [2] * 5 + [3] * 2 + [4])
    assert popularity_slices(train, np.array([9, 4, 3, 2, 1])).tolist() == ["cold", "tail", "tail", "torso", "head"]


BAD = [
    ("missing column", lambda i, t: (i.drop(columns="hour"), t), [],
     "rqgmm: error: column 'hour' (--categorical) is in neither INTER nor ITEMS; their columns are"),
    ("labels not 0/1", lambda i, t: (i.assign(label=i["label"] * 2), t), [],
     "rqgmm: error: label column 'label' must hold 0 or 1 only, got values [0, 2]; binarise it first"),
    ("item without embedding", lambda i, t: (i, t[t["item_id"] != 7]), [],
     "rqgmm: error: {n} interaction row(s) have an item without an embedding in ITEMS (first: 7); add those items"),
    ("time not orderable", lambda i, t: (i.assign(timestamp=[[1]] * len(i)), t), [],
     "rqgmm: error: time column 'timestamp' cannot be ordered"),
    ("unknown variant", lambda i, t: (i, t), ["--variants", "none,codes"],
     "rqgmm: error: unknown --variants value(s) ['codes']; choose from none, embedding, ids, ids+embedding"),
    ("unknown backbone", lambda i, t: (i, t), ["--backbones", "xgb"],
     "rqgmm: error: unknown --backbones value(s) ['xgb']; choose from dcnv2, deepfm, fnn, ipnn"),
    ("bad TOML key", lambda i, t: (i, t), ["--config", "CONFIG"],
     "rqgmm: error: unknown key 'epochs' in CONFIG; valid keys: user, item, label, time,"),
    ("one column two roles", lambda i, t: (i, t), ["--user", "item_id"],
     "rqgmm: error: column 'item_id' is given as --user and as --item; give each column one role\n"),
    ("label declared numeric", lambda i, t: (i, t), ["--numeric", "label"],
     "rqgmm: error: column 'label' is given as --label and as --numeric; give each column one role\n"),
    ("categorical list column", lambda i, t: (i, t), ["--categorical", "tags", "--bag", "recent"],
     "rqgmm: error: column 'tags' (--categorical) holds lists; declare it --bag\n"),
    ("numeric strings", lambda i, t: (i.assign(dwell=i["dwell"].map(lambda v: f"{v}s")), t), [],
     "rqgmm: error: numeric column 'dwell' holds large_string values; pass numbers (or declare it --categorical)\n"),
    ("time strings not numbers or dates", lambda i, t: (i.assign(timestamp=[f"t{v}" for v in i["timestamp"]]), t), [],
     "rqgmm: error: time column 'timestamp' holds strings that are neither numbers nor ISO 8601 dates (e.g. 't"),
    ("all-empty embeddings", lambda i, t: (i, t.assign(image_emb=[[] for _ in range(len(t))])), [],
     "rqgmm: error: embedding column 'image_emb' holds empty vectors only; embed the items first (`rqgmm embed`) "
     "or pass the column that holds the vectors\n"),
    ("TOML float level", lambda i, t: (i, t), ["--config", "FLOAT"],
     "rqgmm: error: levels must be an integer or a list of integers, got 2.7\n"),
    ("shape list below 2", lambda i, t: (i, t), ["--levels", "1,2"],
     "rqgmm: error: --levels lists 1,2; a sweep takes whole numbers >= 2, e.g. 2,3\n"),
    ("shape list not integers", lambda i, t: (i, t), ["--codebook-size", "64,x"],
     "rqgmm: error: codebook_size must be an integer or a list of integers, got '64,x'\n"),
    ("same shape twice", lambda i, t: (i, t), ["--codebook-size", "64,64"],
     "rqgmm: error: --codebook-size lists 64 twice; name each shape once\n"),
    ("TOML bool seeds", lambda i, t: (i, t), ["--config", "BOOL"], "rqgmm: error: seeds must be an integer, got True\n"),
    ("TOML not UTF-8", lambda i, t: (i, t), ["--config", "LATIN"],
     "rqgmm: error: LATIN is not UTF-8 text (byte 24: invalid continuation byte); save the TOML file as UTF-8\n"),
    ("one label in the test rows", lambda i, t: (i.assign(label=np.where(
        i["timestamp"] >= np.sort(i["timestamp"])[int(0.9 * len(i))], 0, i["label"])), t), [],
     "rqgmm: error: the test rows (last 10% by time) hold only label 0; AUC needs clicks and non-clicks in each "
     "part: pass a log with both labels in that part\n"),
]
if not torch.cuda.is_available():
    BAD.append(("cuda without a GPU", lambda i, t: (i, t), ["--device", "cuda"],
                "rqgmm: error: --device cuda: this machine has no CUDA device"))


@pytest.mark.parametrize("case,damage,extra,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case, damage, extra, message):
    interactions, items = damage(*synthetic_log())
    paths = {"INTER": tmp_path / "inter.parquet", "ITEMS": tmp_path / "items.parquet", "CONFIG": tmp_path / "c.toml",
             "FLOAT": tmp_path / "f.toml", "BOOL": tmp_path / "b.toml", "LATIN": tmp_path / "l.toml"}
    interactions.to_parquet(paths["INTER"])
    items.to_parquet(paths["ITEMS"])
    paths["CONFIG"].write_text("levels = 2\nepochs = 3\n")
    paths["FLOAT"].write_text("levels = 2.7\n")
    paths["BOOL"].write_text("seeds = true\n")
    paths["LATIN"].write_bytes('methods = "rqgmm"  # café\n'.encode("latin-1"))
    extra = [str(paths.get(a, a)) for a in extra]
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["evaluate", str(paths["INTER"]), "--items", str(paths["ITEMS"]), "--out", str(tmp_path / "out"),
                 *FIELDS, *extra])
    err = capsys.readouterr().err
    n_missing = int((synthetic_log()[0]["item_id"] == 7).sum())
    expected = message.format(n=n_missing)
    for name, path in paths.items():
        expected = expected.replace(name, str(path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(expected), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_toml_config_equals_the_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('categorical = ["hour", "brand"]\nbag = "tags,recent"\nembedding = ["text_emb"]\n'
                    'codebook-size = 4\nbackbones = "fnn,ipnn"\nquick = true\n')
    from rqgmm.evaluate.config import read_toml
    from_file = config_from(read_toml(str(path)))
    from_flags = config_from(dict(categorical="hour,brand", bag="tags,recent", embedding=["text_emb"],
                                  codebook_size="4", backbones="fnn,ipnn", quick=True))
    assert from_file == from_flags and from_file.seeds == 1 and from_file.train.max_epochs == 4


def test_interactions_without_time_column_split_at_random():
    interactions, items = synthetic_log()
    config = config_from(dict(embedding=["text_emb"]))
    data = check_inputs(interactions.drop(columns="timestamp"), items, config)
    assert not data.timed
    assert pd.api.types.is_integer_dtype(data.interactions["label"])


@pytest.mark.parametrize("method", ["rqkmeans+balanced", "rqgmm+balanced"])
def test_balanced_tokenizers_are_variants_of_the_study(method):
    """METHOD+balanced fits METHOD with balanced codes: no code holds more than ceil(1.5 N / K) items."""
    from rqgmm.evaluate.tokenizer_stage import fit_tokenizer

    X = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    X[:200] *= 0.05  # a dense blob that plain k-means would give few codes
    config = config_from(dict(embedding=["text_emb"], methods=method, levels=2, codebook_size=4))
    metrics, table = fit_tokenizer(method, X, np.arange(300), config, seed=0)
    assert table.method == method.split("+")[0]
    for level in range(2):
        assert np.bincount(table.codes[:, level], minlength=4).max() <= int(np.ceil(1.5 * 300 / 4))


def test_time_strings_are_read_as_numbers_or_dates_not_sorted_as_text():
    interactions, items = synthetic_log()
    interactions["timestamp"] = np.arange(len(interactions))[::-1] * 7  # 1 to 4 digits: text order differs
    config = config_from(dict(embedding=["text_emb"]))
    numbers = check_inputs(interactions, items, config).order
    as_text = interactions.assign(timestamp=interactions["timestamp"].astype(str))
    iso = interactions.assign(timestamp=pd.to_datetime(interactions["timestamp"], unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S"))
    assert (check_inputs(as_text, items, config).order == numbers).all()
    assert (check_inputs(iso, items, config).order == numbers).all()
    assert not (np.argsort(as_text["timestamp"].to_numpy(), kind="stable") == numbers).all()


def test_evaluate_help_states_the_defaults_of_evaluate_config(capsys):
    """The help states EvaluateConfig's defaults (read from it, not restated)."""
    from rqgmm.evaluate.config import defaults

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    default = defaults()
    from rqgmm.cli.evaluate import SHAPE_DEFAULT

    for shown in (f"ID levels L, or a list to sweep, 2,3 (default {SHAPE_DEFAULT})",
                  f"K per level, or a list to sweep, 64,256 (default {SHAPE_DEFAULT})",
                  f"number of seeds (default {default['seeds']};", f"(default {','.join(default['methods'])})",
                  f"{default['tokenize']} (default)", f"{default['task']} (default)"):
        assert shown in text, shown


def test_without_a_shape_the_catalogue_default_applies_and_the_header_says_so():
    from rqgmm.evaluate.command import describe
    from rqgmm.ids.shape import default_shape
    from rqgmm.ids.shape import describe as rule

    config = config_from({})
    assert config.levels is None and config.codebook_size is None
    assert (config.with_shape(10**6).levels, config.with_shape(10**6).codebook_size) == default_shape(10**6)
    assert config_from({"levels": 4}).with_shape(10**6).levels == 4  # a given option stays
    assert config_from({"methods": "all"}).methods == tuple(methods())
    assert describe(config, True, 9066)["ids"] == f"3 levels x K=256 ({rule(9066)})"
    assert describe(config_from({"levels": 2, "codebook_size": 4}), True, 9066)["ids"] == "2 levels x K=4"


def test_a_shape_sweep_fits_one_tokenizer_per_shape_and_compares_them_head_to_head(log_files):
    interactions, items = (pd.read_parquet(p) for p in log_files)
    config = config_from(dict(embedding=["text_emb"], methods="rqkmeans", levels="2,3", codebook_size=4,
                              variants="none,ids", backbones="fnn", seeds=2, quick=True))
    records = Evaluation(check_inputs(interactions, items, config), config, progress=False).run()
    tokenizers = [r for r in records if r["kind"] == "tokenizer"]
    assert sorted({(r["tokenizer"], r["setting"], r["levels"]) for r in tokenizers}) == [
        ("rqkmeans 2x4", "2x4", 2), ("rqkmeans 3x4", "3x4", 3)]
    assert {r["setting"]: r.get("cut_from") for r in tokenizers} == {"2x4": "3x4", "3x4": None}  # one fit per seed
    assert {r["label"] for r in records if r["kind"] == "ctr"} == {"none", "ids (rqkmeans 2x4)", "ids (rqkmeans 3x4)"}
    heads = [r for r in records if r["kind"] == "comparison" and r["rival"]]
    assert heads and {(c["name"], c["rival_name"], c["interval"]) for c in heads} == {
        ("rqkmeans 2x4", "rqkmeans 3x4", "seeds+users")}
    report = render_report(records, dict(command="rqgmm evaluate"))
    assert "### Shape 2x4" in report and "### Shape 3x4" in report and "| AUC ids cold |" in report
    diagnostics = [r for r in records if r["kind"] == "diagnostic"]
    assert sorted((r["tokenizer"], r["seed"], len(r["coherence"])) for r in diagnostics) == [
        ("rqkmeans 2x4", 0, 2), ("rqkmeans 2x4", 1, 2), ("rqkmeans 3x4", 0, 3), ("rqkmeans 3x4", 1, 3)]
    assert "## Diagnostics without training" in report


def test_the_ctr_split_drops_the_times_and_keeps_every_other_column():
    """Ordered for the CTR task the log has no time column (8 bytes a row); every other column equals the
    ordering that keeps the times, and the unordered log is emptied."""
    interactions, items = synthetic_log()
    config = config_from(dict(categorical="hour,brand", bag="tags", embedding=["text_emb"], seeds=1, quick=True))
    data = check_inputs(interactions, items, config)
    kept = data.interactions.ordered(data.order, 100, times=True)
    dropped = data.interactions.ordered(data.order, 100, release=True, times=False)
    assert dropped.times is None and kept.times is not None and data.interactions.times is None
    np.testing.assert_array_equal(dropped.item_rows, kept.item_rows)
    np.testing.assert_array_equal(dropped.labels, kept.labels)
    for name in kept.codes:
        np.testing.assert_array_equal(dropped.codes[name], kept.codes[name])


def test_slice_codes_are_the_slices_names_as_one_byte_codes():
    """The int8 codes, read through SLICES, are the names the np.select rule gives (first rule that holds)."""
    from rqgmm.evaluate.slices import QUANTILES, slice_codes

    rng = np.random.default_rng(2)
    for _ in range(20):
        train, test = rng.integers(0, 40, rng.integers(0, 400)), rng.integers(0, 60, 300)
        table = np.bincount(train, minlength=61)
        popularity = table[test]
        low, high = np.quantile(table[table > 0], QUANTILES) if len(train) else (0.0, 0.0)
        names = np.select([popularity == 0, popularity <= low, popularity <= high], ["cold", "tail", "torso"], "head")
        codes = slice_codes(train, test)
        assert codes.dtype == np.int8 and np.asarray(SLICES)[codes].tolist() == names.tolist()
        assert popularity_slices(train, test).tolist() == names.tolist()
        assert (pd.Categorical.from_codes(codes, categories=SLICES) == pd.Categorical(names, categories=SLICES)).all()


def test_fused_vectors_written_to_the_device_give_the_records_of_the_host_array(monkeypatch):
    """Where the fits run on a GPU with room, the fused vectors are written there block by block, no host copy
    of the whole; the fits, codes, metrics and diagnostics read that tensor as they read the numpy array. Here
    the tensor path runs on the CPU (``fits_on_device`` forced): every record but the timings is the same."""
    interactions, items = synthetic_log()
    config = config_from(dict(embedding=["text_emb", "image_emb"], methods="rqgmm,rqkmeans", backbones="fnn",
                              variants="none,ids", levels=2, codebook_size=4, seeds=1, quick=True))

    def records() -> list[dict]:
        found = Evaluation(check_inputs(interactions, items, config), config, progress=False).run()
        return [{k: v for k, v in r.items() if "second" not in k} for r in found if r["kind"] != "ctr"]

    inputs = []
    real_fused = tokenizer_stage.TokenizerStage._fused
    monkeypatch.setattr(tokenizer_stage.TokenizerStage, "_fused",
                        lambda stage: inputs.append(real_fused(stage)) or inputs[-1])
    on_host = records()
    monkeypatch.setattr(tokenizer_stage, "fits_on_device", lambda *shape: True)
    on_device = records()
    assert isinstance(inputs[0], np.ndarray) and isinstance(inputs[1], torch.Tensor)
    np.testing.assert_array_equal(inputs[0], inputs[1].numpy())
    assert on_device == on_host and any(r["kind"] == "diagnostic" for r in on_host)
