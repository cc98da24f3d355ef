"""``rqgmm report EMB CODES --interactions LOG``: the diagnostics of the codes against a click log (co-click
lift and click-rate R² per level, each against random IDs), checked against a direct computation on a tiny
log, and its bad inputs refused with exit 2 in one line, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rqgmm.cli import main

#: 8 items (ids 10..17) with 2-level codes; prefixes of level 1: {0: 10,11,12}, {1: 13,14}, {2: 15,16,17}.
CODES = np.array([[0, 0], [0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 0], [2, 1]])
IDS = np.arange(10, 18)


def _log(rng: np.random.Generator, rows: int = 90) -> pa.Table:
    """A log whose file order is not its time order (so a diagnostic read in file order would differ)."""
    users = rng.integers(0, 6, rows)
    items = IDS[rng.integers(0, len(IDS), rows)]
    labels = (rng.random(rows) < 0.5).astype(np.int64)
    times = rng.permutation(rows) // 2  # ties: the file's order breaks them
    extra = pa.array(np.full(rows, 99))  # an item id the codes lack: its rows are left out
    items = np.where(np.arange(rows) % 15 == 0, extra.to_numpy(), items)
    return pa.table({"user_id": users, "item_id": items, "label": labels, "timestamp": times})


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(5)
    emb = rng.normal(size=(len(IDS), 4)).astype(np.float32)
    pq.write_table(pa.table({"item_id": IDS, "embedding": pa.array(list(emb), pa.list_(pa.float32()))}),
                   tmp_path / "emb.parquet")
    pq.write_table(pa.table({"item_id": IDS, "c1": CODES[:, 0], "c2": CODES[:, 1]}), tmp_path / "codes.parquet")
    pq.write_table(_log(rng), tmp_path / "log.parquet")
    return tmp_path


def reference(log: pa.Table, codes: np.ndarray = CODES) -> dict:
    """The diagnostics by their definitions, one row at a time (no code shared with the library)."""
    frame = {c: log.column(c).to_pylist() for c in log.column_names}
    order = sorted(range(len(frame["user_id"])), key=lambda i: frame["timestamp"][i])  # sorted() is stable
    row_of = {int(v): i for i, v in enumerate(IDS)}
    kept = [i for i in order if frame["item_id"][i] in row_of]
    pairs, last = [], {}
    for i in kept:
        if frame["label"][i] == 1:
            user, item = frame["user_id"][i], row_of[frame["item_id"][i]]
            if user in last:
                pairs.append((last[user], item))
            last[user] = item
    clicks, shown = {}, {}
    for i in kept:
        item = row_of[frame["item_id"][i]]
        shown[item] = shown.get(item, 0) + 1
        clicks[item] = clicks.get(item, 0) + frame["label"][i]
    out = {"rows": len(frame["user_id"]), "rows_matched": len(kept), "pairs": len(pairs), "coherence": [], "r2": []}
    n = len(IDS)
    for level in (1, 2):
        prefix = [tuple(c[:level]) for c in codes]
        observed = sum(prefix[a] == prefix[b] for a, b in pairs) / len(pairs)
        repeat = sum(a == b for a, b in pairs) / len(pairs)
        sizes = {p: prefix.count(p) for p in set(prefix)}
        chance = sum(s * (s - 1) for s in sizes.values()) / (n * (n - 1))
        expected = repeat + (1 - repeat) * chance
        out["coherence"].append(dict(level=level, observed=observed, expected=expected, lift=observed / expected))
        rates = {item: clicks[item] / shown[item] for item in shown}
        mean = sum(rates.values()) / len(rates)
        groups = {}
        for item, rate in rates.items():
            groups.setdefault(prefix[item], []).append(rate)
        between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        total = sum((r - mean) ** 2 for r in rates.values())
        out["r2"].append(dict(level=level, r2=between / total, expected=(len(groups) - 1) / (len(rates) - 1)))
    return out


def _report(files, capsys, *extra) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["report", str(files / "emb.parquet"), str(files / "codes.parquet"), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_diagnostics_equal_a_direct_computation(files, capsys):
    code, out, _ = _report(files, capsys, "--interactions", str(files / "log.parquet"), "--json")
    got = json.loads(out)["diagnostics"]
    want = reference(pq.read_table(files / "log.parquet"))
    assert code == 0 and got["items"] == len(IDS)
    for key in ("rows", "rows_matched", "pairs"):
        assert got[key] == want[key], key
    for kind in ("coherence", "r2"):
        for g, w in zip(got[kind], want[kind], strict=True):
            assert g.keys() == w.keys()
            np.testing.assert_allclose([g[k] for k in w], [w[k] for k in w], rtol=1e-12)


def test_at_random_is_the_mean_over_random_deals_of_the_same_ids(files, capsys):
    """The 'at random' figures are the expectations over random permutations of the IDs among the items."""
    code, out, _ = _report(files, capsys, "--interactions", str(files / "log.parquet"), "--json")
    got = json.loads(out)["diagnostics"]
    log = pq.read_table(files / "log.parquet")
    rng, draws = np.random.default_rng(0), {"coherence": [], "r2": []}
    for _ in range(1500):
        ref = reference(log, CODES[rng.permutation(len(CODES))])
        draws["coherence"].append([c["observed"] for c in ref["coherence"]])
        draws["r2"].append([r["r2"] for r in ref["r2"]])
    for kind, key in (("coherence", "observed"), ("r2", "r2")):
        values = np.array(draws[kind])
        error = 4 * values.std(0) / np.sqrt(len(values))  # 4 standard errors of the Monte Carlo mean
        assert (abs(values.mean(0) - [d["expected"] for d in got[kind]]) < error).all(), kind


def test_the_human_report_shows_a_table_per_level(files, capsys):
    code, out, _ = _report(files, capsys, "--interactions", str(files / "log.parquet"))
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("diagnostics against"))
    assert code == 0 and "lift" in lines[at + 1] and "click-rate R²" in lines[at + 1]
    assert [line.split()[0] for line in lines[at + 2:at + 4]] == ["1", "2"]


def test_columns_of_other_names_and_no_time_column(files, capsys):
    """--user/--item/--label/--time name the columns; without a time column the file's order is the order."""
    log = pq.read_table(files / "log.parquet")
    ordered = log.take(pa.array(np.argsort(log.column("timestamp").to_numpy(), kind="stable")))
    renamed = ordered.drop(["timestamp"]).rename_columns(["who", "what", "clicked"])
    pq.write_table(renamed, files / "renamed.parquet")
    _, timed, _ = _report(files, capsys, "--interactions", str(files / "log.parquet"), "--json")
    code, plain, _ = _report(files, capsys, "--interactions", str(files / "renamed.parquet"), "--json", "--user", "who",
                             "--item", "what", "--label", "clicked")
    a, b = json.loads(timed)["diagnostics"], json.loads(plain)["diagnostics"]
    assert code == 0 and {k: v for k, v in a.items() if k != "log"} == {k: v for k, v in b.items() if k != "log"}


def _write(files, name: str, table: pa.Table) -> str:
    pq.write_table(table, files / name)
    return str(files / name)


@pytest.mark.parametrize("case, message", [
    ("missing", "--interactions {d}/nope.parquet does not exist; pass a parquet log with one row per interaction"),
    ("no item", "none of its 90 rows names an item of the codes"),
    ("no label", "has no column 'label' (columns: user_id, item_id, timestamp); name the label column with --label"),
    ("label 2", "label column 'label' holds 1 values other than 0 and 1 (first: 2); labels must be 0 or 1"),
    ("label null", "label column 'label' has 1 null values; labels must be 0 or 1"),
    ("label text", "label column 'label' has type string; labels must be 0/1 numbers"),
    ("no user", "has no column 'user_id'"),
    ("time given, absent", "has no column 'when'"),
    ("user without log", "--user, --label and --time name the columns of --interactions; pass the log too"),
    ("not parquet", "is not a readable parquet file"),
    ("against negative codes", "holds negative codes"),  # was refused after the K warning: two lines
])
def test_bad_logs_exit_2_with_one_line_and_write_nothing(files, capsys, case, message):
    log = pq.read_table(files / "log.parquet")
    label = log.column("label").to_numpy()
    extra = {
        "missing": lambda: ["--interactions", str(files / "nope.parquet")],
        "no item": lambda: ["--interactions", _write(files, "x.parquet", log.set_column(1, "item_id", pa.array(
            np.full(len(log), 5))))],
        "no label": lambda: ["--interactions", _write(files, "x.parquet", log.drop(["label"]))],
        "label 2": lambda: ["--interactions", _write(files, "x.parquet", log.set_column(2, "label", pa.array(
            np.where(np.arange(len(log)) == 3, 2, label))))],
        "label null": lambda: ["--interactions", _write(files, "x.parquet", log.set_column(2, "label", pa.array(
            [None, *label[1:].tolist()], pa.int64())))],
        "label text": lambda: ["--interactions", _write(files, "x.parquet", log.set_column(2, "label", pa.array(
            label.astype(str))))],
        "no user": lambda: ["--interactions", _write(files, "x.parquet", log.drop(["user_id"]))],
        "time given, absent": lambda: ["--interactions", str(files / "log.parquet"), "--time", "when"],
        "user without log": lambda: ["--user", "u"],
        "not parquet": lambda: ["--interactions", str(files / "emb.parquet.txt")],
        "against negative codes": lambda: ["--against", _write(files, "old.parquet", pa.table(
            {"item_id": IDS, "c1": -CODES[:, 0], "c2": CODES[:, 1]}))],
    }[case]()
    (files / "emb.parquet.txt").write_text("not parquet\n")
    before = {p.name: p.read_bytes() for p in files.iterdir()}
    code, out, err = _report(files, capsys, *extra)
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert message.format(d=files) in err and err.startswith("rqgmm: error: ")
    assert {p.name: p.read_bytes() for p in files.iterdir()} == before


def test_column_options_with_a_store_are_refused(tmp_path, capsys):
    from rqgmm.cli import store

    class Args:
        emb, codes, model, against, user, label, time = "s", None, None, None, "u", None, None

    with pytest.raises(Exception, match="--user, --label and --time go with a codes table's --interactions"):
        store.cmd_report_store(Args(), str(tmp_path))
