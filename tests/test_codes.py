"""The codes table: layouts that map back, metadata that survives a file, old files, bad files, the CLI."""

import json
import re
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_mixture, write_embeddings

from rqgmm import RQGMM

from rqgmm.files import formats as io
from rqgmm.cli import main
from rqgmm.ids.codes import (CodesTable, flatten_codes, format_tokens, level_name, level_offsets, parse_tokens,
                         read_codes, unflatten_codes, write_codes)
from rqgmm.errors import InputError
from rqgmm.ids.suffix import unique_suffix

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = [5, 3, 7]


def _codes(n: int = 40, sizes=SIZES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.integers(k, size=n) for k in sizes]).astype(np.int64)


def _table(**kwargs) -> CodesTable:
    codes = _codes()
    defaults = dict(item_ids=np.arange(100, 100 + len(codes)), codebook_sizes=SIZES, method="rqgmm",
                    suffix=unique_suffix(codes), fingerprint="0123456789abcdef")
    return CodesTable(codes, **{**defaults, **kwargs})


def _metadata(path) -> dict:
    return json.loads(pq.read_schema(path).metadata[b"rqgmm"])


# ------------------------------------------------------------------ layouts in memory


def test_level_names_continue_past_26_levels():
    assert [level_name(i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == \
        ["a", "b", "z", "aa", "ab", "az", "ba", "zz", "aaa"]
    assert len({level_name(i) for i in range(2000)}) == 2000


def test_flat_ids_share_one_vocabulary_and_map_back():
    codes = _codes()
    flat = flatten_codes(codes, SIZES)
    np.testing.assert_array_equal(level_offsets(SIZES), [0, 5, 8])
    for level, (low, k) in enumerate(zip(level_offsets(SIZES), SIZES)):
        assert low <= flat[:, level].min() and flat[:, level].max() < low + k  # disjoint ranges
    assert flat.max() < sum(SIZES)
    np.testing.assert_array_equal(unflatten_codes(flat, SIZES), codes)


def test_unflatten_refuses_ids_of_another_level():
    flat = flatten_codes(_codes(), SIZES)
    flat[3, 1] = 2  # a level-1 id in the level-2 column
    with pytest.raises(InputError, match=re.escape("flat ids of level 2 must lie in [5, 8), got values in [2, 7]")):
        unflatten_codes(flat, SIZES)


def test_tokens_parse_back_with_a_suffix_and_past_26_levels():
    codes = _codes(sizes=[300] * 30)
    suffix = np.arange(len(codes))
    strings = format_tokens(codes, suffix)
    assert strings[0].startswith(f"<a_{codes[0, 0]}><b_{codes[0, 1]}>")
    assert strings[0].endswith(f"<ad_{codes[0, 29]}><ae_0>")
    back = parse_tokens(strings, levels=31)
    np.testing.assert_array_equal(back[:, :30], codes)
    np.testing.assert_array_equal(back[:, 30], suffix)
    assert format_tokens(np.array([[3, 9, 1]]))[0] == "<a_3><b_9><c_1>"


@pytest.mark.parametrize("text, expect", [
    ("<a_3><b_9>c_1>", "row 1: '<a_3><b_9>c_1>' is not a token string like <a_3><b_9><c_1>"),
    ("<a_3><b_09><c_1>", "row 1: '<a_3><b_09><c_1>' is not a token string like <a_3><b_9><c_1>"),
    ("<a_3><c_1><b_9>", "row 1: '<a_3><c_1><b_9>' holds tokens acb where abc were expected, in that order"),
    ("<a_3><b_9>", "row 1: '<a_3><b_9>' holds tokens ab where abc were expected, in that order"),
    (None, "row 1: None is not a token string like <a_3><b_9><c_1>"),
])
def test_bad_token_strings_are_refused(text, expect):
    with pytest.raises(InputError, match=f"^{re.escape(expect)}$"):
        parse_tokens(["<a_0><b_0><c_0>", text], levels=3)


@pytest.mark.parametrize("kwargs, expect", [
    (dict(codebook_sizes=[5, 3]), "codebook_sizes must be 3 positive integers (one per level), got [5, 3]"),
    (dict(codebook_sizes=[5, 2, 7]), "codes at level 2 must lie in [0, 2), got values in [0, 2]"),
    (dict(item_ids=np.arange(3)), "3 item ids for 40 rows of codes; give one id per row"),
    (dict(suffix=-np.ones(40, np.int64)), "suffix values must be >= 0, got -1"),
])
def test_an_inconsistent_table_is_refused(kwargs, expect):
    with pytest.raises(InputError, match=re.escape(expect)):
        _table(**kwargs)


# ------------------------------------------------------------------------------ files


@pytest.mark.parametrize("format", ["codes", "flat", "tokens"])
def test_every_layout_reads_back_as_the_codes_with_their_metadata(tmp_path, format):
    table = _table()
    write_codes(tmp_path / "c.parquet", table, format)
    back = read_codes(tmp_path / "c.parquet")
    np.testing.assert_array_equal(back.codes, table.codes)
    np.testing.assert_array_equal(back.item_ids, table.item_ids)
    np.testing.assert_array_equal(back.suffix, table.suffix)
    assert (back.codebook_sizes, back.method, back.fingerprint) == (SIZES, "rqgmm", "0123456789abcdef")
    meta = _metadata(tmp_path / "c.parquet")
    assert meta["format"] == format and meta["levels"] == 3 and meta["suffix_range"] == table.suffix_range
    columns = {"codes": ["c1", "c2", "c3", "suffix"], "flat": ["t1", "t2", "t3", "suffix"], "tokens": ["tokens"]}
    assert pq.read_schema(tmp_path / "c.parquet").names == ["item_id", *columns[format]]
    if format == "flat":
        assert meta["offsets"] == [0, 5, 8] and meta["vocab_size"] == 15
        np.testing.assert_array_equal(pq.read_table(tmp_path / "c.parquet").column("t2").to_numpy(),
                                      table.codes[:, 1] + 5)


def test_a_codes_file_written_before_the_metadata_still_reads(tmp_path):
    codes = _codes()
    pq.write_table(pa.table({"item_id": np.arange(40), "c1": codes[:, 0], "c2": codes[:, 1], "c3": codes[:, 2],
                             "suffix": unique_suffix(codes)}), tmp_path / "old.parquet")
    back = read_codes(tmp_path / "old.parquet")
    np.testing.assert_array_equal(back.codes, codes)
    np.testing.assert_array_equal(back.suffix, unique_suffix(codes))
    assert back.codebook_sizes is None and back.method is None and back.fingerprint is None


def _with_metadata(path, **changes):
    """Rewrite a codes parquet with its metadata changed (a key set to None is removed)."""
    table = pq.read_table(path)
    meta = {**json.loads(table.schema.metadata[b"rqgmm"]), **changes}
    meta = {k: v for k, v in meta.items() if v is not None}
    pq.write_table(table.replace_schema_metadata({b"rqgmm": json.dumps(meta).encode()}), path)


@pytest.mark.parametrize("format, damage, expect", [
    ("codes", {"codebook_sizes": [5, 2, 7]}, "codes at level 2 must lie in [0, 2), got values in [0, 2]; "
                                             "rewrite it with `rqgmm encode`"),
    ("codes", {"levels": 2, "codebook_sizes": None},
     "has 3 levels of codes but its metadata says 2; rewrite it with `rqgmm encode`"),
    ("codes", {"suffix_range": [0, 9]}, "its suffix spans [0, 1] but its metadata says [0, 9]"),
    ("codes", {"format": "zip"}, "its schema metadata 'rqgmm' lacks a valid 'version' or 'format' "
                                 "(one of codes, flat, tokens); rewrite it with `rqgmm encode`"),
    ("codes", {"version": 7}, "has codes metadata version 7, newer than this release reads (1); upgrade rqgmm"),
    ("codes", {"codebook_sizes": [5, "3", 7]}, "has codebook_sizes [5, '3', 7], not 3 positive integers"),
    ("flat", {"codebook_sizes": None}, "is in the flat layout without codebook_sizes, so the ids cannot be mapped"),
    ("flat", {"vocab_size": 14}, "has offsets [0, 5, 8] and vocab_size 14, which do not match codebook_sizes"),
    ("flat", {"codebook_sizes": [5, 2, 8], "offsets": [0, 5, 7], "vocab_size": 15},
     "flat ids of level 2 must lie in [5, 7), got values in [5, 7]"),
    ("tokens", {"suffix_range": None}, "row 0: '<a_4><b_1><c_4><d_0>' holds tokens abcd where abc were expected"),
])
def test_a_damaged_codes_file_is_refused_with_what_and_how(tmp_path, format, damage, expect):
    path = tmp_path / "c.parquet"
    write_codes(path, _table(), format)
    _with_metadata(path, **damage)
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}.*{re.escape(expect)}"):
        read_codes(path)


def test_metadata_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"c1": [1]}).replace_schema_metadata({b"rqgmm": b"{oops"}), path)
    with pytest.raises(InputError, match=re.escape(f"{path}: its schema metadata 'rqgmm' is not a JSON object; "
                                                   "rewrite it with `rqgmm encode`")):
        read_codes(path)


@pytest.mark.parametrize("format, kwargs, expect", [
    ("tokens", {}, "the tokens layout needs .parquet (a .npy array cannot say how to read it back)"),
    ("flat", {}, "the flat layout needs .parquet"),
    ("codes", {"item_ids": np.arange(40)}, "a .npy codes file cannot keep item ids; write e.g. codes.parquet"),
    ("codes", {"suffix": np.zeros(40, np.int64)}, "a .npy codes file cannot keep a suffix"),
])
def test_npy_keeps_plain_codes_only_and_says_so(tmp_path, format, kwargs, expect):
    table = CodesTable(_codes(), codebook_sizes=SIZES, **kwargs)
    with pytest.raises(InputError, match=re.escape(expect)):
        write_codes(tmp_path / "c.npy", table, format)
    assert not list(tmp_path.iterdir())


def test_flat_needs_codebook_sizes():
    with pytest.raises(InputError, match=re.escape("the flat layout needs the codebook sizes")):
        CodesTable(_codes()).flat()


# ------------------------------------------------------------------ fingerprint and CLI


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("codes-cli")
    X = make_mixture(n_per=25, k=6, d=6, seed=3)[0].astype(np.float32)
    write_embeddings(d, X, first_id=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = RQGMM(levels=2, codebook_size=[6, 4], max_iter=15, random_state=0, progress=False).fit(X)
    model.save(d / "model")
    return d


def test_fingerprint_is_short_stable_and_tells_models_apart(model_dir, tmp_path):
    model = io.read_model(model_dir / "model")
    fp = io.model_fingerprint(model_dir / "model")
    assert re.fullmatch(r"[0-9a-f]{16}", fp) and io.fingerprint(*model) == fp
    config, tensors = model
    tensors = {**tensors, "offset": tensors["offset"] + 1e-6}
    assert io.fingerprint(config, tensors) != fp


def test_encode_flat_and_tokens_end_to_end(model_dir, monkeypatch, capsys):
    monkeypatch.chdir(model_dir)
    import rqgmm

    model = rqgmm.load("model")
    expected = model.encode(np.load("x.npy"))
    for format in ("flat", "tokens"):
        out = f"codes-{format}.parquet"
        assert main(["encode", "model", "x.parquet", "--out", out, "--format", format, "--unique", "--quiet"]) == 0
        back = read_codes(out)
        np.testing.assert_array_equal(back.codes, expected)
        np.testing.assert_array_equal(back.item_ids, np.arange(500, 500 + len(expected)))
        meta = _metadata(out)
        assert meta["method"] == "rqgmm" and meta["codebook_sizes"] == model.effective_codebook_sizes
        assert meta["fingerprint"] == io.model_fingerprint("model")
        assert meta["suffix_range"] == [0, int(unique_suffix(expected).max())]


@pytest.mark.parametrize("argv, expect", [
    (["--format", "tokens", "--out", "t.npy"], "--format tokens needs a .parquet output"),
    (["--format", "words", "--out", "t.parquet"], "argument --format: invalid choice: 'words'"),
])
def test_encode_refuses_a_layout_it_cannot_write(model_dir, monkeypatch, capsys, argv, expect):
    monkeypatch.chdir(model_dir)
    assert main(["encode", "model", "x.npy", *argv]) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1
    assert not (model_dir / argv[-1]).exists()


def test_report_takes_k_from_the_metadata_and_warns_only_without_it(model_dir, monkeypatch, capsys):
    monkeypatch.chdir(model_dir)
    assert main(["encode", "model", "x.npy", "--out", "r.parquet", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", "x.npy", "r.parquet", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["codebook_size"] == [6, 4] and "largest code" not in err

    codes = read_codes("r.parquet").codes
    pq.write_table(pa.table({"c1": codes[:, 0], "c2": codes[:, 1]}), "old.parquet")
    assert main(["report", "x.npy", "old.parquet", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["codebook_size"] == [int(k) for k in codes.max(0) + 1]
    assert "no --model and no codebook sizes in old.parquet" in err


def test_frame_is_the_codes_layout_the_ctr_side_reads():
    table = _table()
    frame = table.frame()
    assert list(frame.columns) == ["item_id", "c1", "c2", "c3", "suffix"]
    np.testing.assert_array_equal(frame[["c1", "c2", "c3"]].to_numpy(), table.codes)


def test_report_warns_when_the_model_is_not_the_one_that_made_the_codes(model_dir, monkeypatch, capsys):
    monkeypatch.chdir(model_dir)
    assert main(["encode", "model", "x.npy", "--out", "f.parquet", "--quiet"]) == 0
    config, tensors = io.read_model("model")
    io.save_model("other", config, {**tensors, "offset": tensors["offset"] + 1e-3})
    capsys.readouterr()
    assert main(["report", "x.npy", "f.parquet", "--model", "model", "--json"]) == 0
    assert "fingerprint" not in capsys.readouterr().err
    assert main(["report", "x.npy", "f.parquet", "--model", "other", "--json"]) == 0
    err = capsys.readouterr().err
    assert f"f.parquet was made by the model with fingerprint {io.model_fingerprint('model')}, not by other" in err
