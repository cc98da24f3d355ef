"""The verdict of ``rqgmm evaluate``: the comparisons a user acts on, corrected for their number, in words.

Comparisons, per regime × backbone × tokenizer × column (all test rows and
each popularity slice): IDs against ``none`` (what the IDs carry on their
own), IDs+embedding against ``embedding`` (what IDs add to the embedding),
and, per regime × backbone × column, ``embedding`` against ``none`` (the
embedding's own gain, the reference of the cold-gain share); and, head to
head, each IDs variant of one tokenizer configuration (method x shape) against
the same variant of every other. Each difference gets the interval of
:mod:`.intervals` (a bootstrap over test users with one seed; from 2 seeds the
user bootstrap plus the spread across seeds); the whole family of a dataset is
corrected by Holm's step-down method (``tables.holm``): each interval is drawn
at its Holm level, so "beats" (interval above 0) is a Holm rejection at a 5%
family-wise error rate. A head-to-head comparison with one seed stays out of
the family (its interval does not cover training noise). The verdict opens
with :func:`recommendation`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rqgmm.evaluate.intervals import Difference, UserBootstrap, bootstrap_differences, seed_difference
from rqgmm.evaluate.slices import SLICES
from rqgmm.evaluate.tables import FIRST_TOKENIZERS, signed, holm, ordered, select

OVERALL = "all"
COLUMNS = (OVERALL, *SLICES)
ALPHA = 0.05
#: (variant, baseline) pairs of the verdict; the IDs variants once per tokenizer.
PAIRS = (("ids", "none"), ("ids+embedding", "embedding"), ("embedding", "none"))
#: The variants whose tokenizer configurations are compared head to head.
ID_VARIANTS = ("ids", "ids+embedding")
WHERE = {OVERALL: "all rows", "cold": "cold items", "tail": "tail items", "torso": "torso items",
         "head": "head items"}
NAMES = {"none": "no content", "embedding": "the embedding", "ids": "IDs", "ids+embedding": "IDs+embedding"}


@dataclass
class TestRows:
    """The test rows every CTR run scored, and each run's predictions.

    Attributes
    ----------
    labels : ndarray (N,) of 0/1
    users : ndarray (N,) of int, each row's user code
    slices : ndarray (N,) of str, or a Categorical of them: each row's popularity slice
    predictions : dict of (regime, backbone, seed, label) -> ndarray (N,) float32
    """

    labels: np.ndarray
    users: np.ndarray
    slices: np.ndarray
    predictions: dict = field(default_factory=dict)
    _masks: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _users: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def mask(self, column: str) -> np.ndarray:
        """The rows of ``column`` (bool (N,)), computed once per column and shared by every comparison."""
        if column not in self._masks:
            self._masks[column] = np.ones(len(self.labels), bool) if column == OVERALL else self.slices == column
        return self._masks[column]

    def users_in(self, column: str) -> int:
        """The number of distinct users among the rows of ``column`` (counted once per column)."""
        if column not in self._users:
            self._users[column] = int(len(np.unique(np.asarray(self.users)[self.mask(column)])))
        return self._users[column]


def _value(record: dict, column: str) -> float | None:
    return record.get("auc") if column == OVERALL else record["slices"][column].get("auc")


def _plan(a: list[dict], b: list[dict], column: str, test: TestRows | None) -> Difference | tuple | None:
    """a − b in AUC on ``column``: the bootstrap's (keys_a, keys_b, column, rows) over the common seeds when every
    run's predictions are at hand; else a Student-t Difference across the seeds' AUCs (none: one seed)."""
    left = {r["seed"]: r for r in a if _value(r, column) is not None}
    right = {r["seed"]: r for r in b if _value(r, column) is not None}
    seeds = sorted(set(left) & set(right))
    if not seeds:
        return None
    keys = [[(r["regime"], r["backbone"], s, r["label"]) for r in (left[s], right[s])] for s in seeds]
    if test is not None and all(k in test.predictions for p in keys for k in p):
        return [k for k, _ in keys], [k for _, k in keys], column, test.mask(column)
    return seed_difference([_value(left[s], column) for s in seeds], [_value(right[s], column) for s in seeds])


def _pairs(recs: list[dict]) -> list[tuple[str, str | None, str, str | None]]:
    """(variant label, tokenizer, baseline label, rival tokenizer) of every comparison present: each variant
    against its baseline, then each IDs variant of one tokenizer configuration against another's (head to head)."""
    labels, out = {r["label"] for r in recs}, []
    tokenizers = ordered((r["tokenizer"] for r in recs), FIRST_TOKENIZERS)
    for variant, baseline in PAIRS:
        if baseline not in labels:
            continue
        if variant.startswith("ids"):
            out += [(f"{variant} ({t})", t, baseline, None) for t in tokenizers if f"{variant} ({t})" in labels]
        elif variant in labels:
            out.append((variant, None, baseline, None))
    for variant in ID_VARIANTS:
        present = [t for t in tokenizers if f"{variant} ({t})" in labels]
        out += [(f"{variant} ({a})", a, f"{variant} ({b})", b) for i, a in enumerate(present) for b in present[i + 1:]]
    return out


def _found(ctr: list[dict], test: TestRows | None) -> list[tuple[dict, Difference | tuple]]:
    """Every comparison's record stub and its plan (see :func:`_plan`), regime × backbone × pair × column."""
    found = []
    for regime in ordered(r["regime"] for r in ctr):
        for backbone in ordered(r["backbone"] for r in select(ctr, regime=regime)):
            group = select(ctr, regime=regime, backbone=backbone)
            for label, tokenizer, baseline, rival in _pairs(group):
                for column in COLUMNS:
                    plan = _plan(select(group, label=label), select(group, label=baseline), column, test)
                    if plan is not None:
                        found.append((dict(kind="comparison", dataset=group[0]["dataset"], regime=regime,
                                           backbone=backbone, tokenizer=tokenizer, rival=rival,
                                           variant=label.split(" ")[0], label=label, baseline=baseline,
                                           column=column, **_counts(group[0], column, test)), plan))
    return found


def _counts(record: dict, column: str, test: TestRows | None) -> dict:
    """The test rows and test users behind a comparison on ``column`` (users: None without the rows at hand)."""
    if test is None:
        return dict(rows=record["n_test"] if column == OVERALL else record["slices"][column]["n"], users=None)
    return dict(rows=int(test.mask(column).sum()), users=test.users_in(column))


def _shapes(records: Sequence[dict]) -> dict[str, str]:
    """Each tokenizer's shape label ("2x128") from its tokenizer records."""
    return {r["tokenizer"]: r["setting"] for r in select(records, kind="tokenizer") if r.get("setting")}


def config_name(tokenizer: str | None, shapes: dict[str, str]) -> str | None:
    """A tokenizer configuration in words, method then shape: "rqgmm 2x256" (the method alone without a shape)."""
    if tokenizer is None:
        return None
    shape = shapes.get(tokenizer)
    return tokenizer if shape is None or tokenizer.endswith(f" {shape}") else f"{tokenizer} {shape}"


def comparisons(records: Sequence[dict], test: TestRows | None = None, alpha: float = ALPHA,
                directory: str | os.PathLike | None = None) -> list[dict]:
    """The verdict's comparison records (kind ``"comparison"``) of one dataset's CTR records, Holm-corrected.

    A head-to-head comparison (``rival`` set) whose interval does not cover training noise (one seed) stays out
    of the Holm family: it is reported with its 95% interval and never called a win. ``directory``: where the
    bootstrap's influence table goes when it outgrows its memory budget (None: the system's temporary directory).
    """
    found, shapes = _found(select(records, kind="ctr"), test), _shapes(records)
    for record, _ in found:
        record.update(name=config_name(record["tokenizer"], shapes), rival_name=config_name(record["rival"], shapes))
    booted = [i for i, (_, plan) in enumerate(found) if isinstance(plan, tuple)]
    if booted:
        boot = UserBootstrap(test.labels, test.users)
        diffs = bootstrap_differences(boot, test.predictions, [found[i][1] for i in booted], directory=directory)
        for i, diff in zip(booted, diffs):
            found[i] = (found[i][0], diff)
    tested = [i for i, (record, d) in enumerate(found)
              if d.p_value() is not None and (record["rival"] is None or d.covers_training)]
    adjusted, levels = holm([found[i][1].p_value() for i in tested], alpha) if tested else ([], [])
    out = []
    for record, diff in found:
        low95, high95 = diff.interval(alpha)
        record.update(mean=diff.mean, interval=diff.kind, seeds=diff.n, low95=low95, high95=high95,
                      p=diff.p_value(), p_holm=None, level=None, low=None, high=None, family=len(tested),
                      covers_training=diff.covers_training)
        out.append(record)
    for i, p_adj, level in zip(tested, adjusted, levels):
        low, high = found[i][1].interval(float(level))
        out[i].update(p_holm=float(p_adj), level=float(level), low=low, high=high)
    return out


# ----------------------------------------------------------------------------- words


def fmt(c: dict, digits: int = 4) -> str:
    """"+0.0012 [+0.0007, +0.0017]" at the Holm level; "+0.0012 (one seed, no interval)" without one."""
    if c["low"] is None:
        return f"{signed(c['mean'], digits)} (no interval)"
    return f"{signed(c['mean'], digits)} [{signed(c['low'], digits)}, {signed(c['high'], digits)}]"


def outcome(c: dict) -> str:
    """"beats", "loses to" or "no difference shown" at the comparison's Holm level."""
    if c["low"] is not None and c["low"] > 0:
        return "beats"
    if c["high"] is not None and c["high"] < 0:
        return "loses to"
    return "no difference shown"


ONE_SEED = "one seed: training noise not covered"


def head_to_head(c: dict) -> str:
    """One head-to-head comparison in words: "rqgmm 2x256 beats rqkmeans 2x256 by +0.0100 [lo, hi]", "... cannot
    be told apart (+0.0003 [lo, hi])", or its one-seed 95% interval, labelled and never called a win."""
    a, b = c.get("name") or c["tokenizer"], c.get("rival_name") or c["rival"]
    if not c.get("covers_training"):
        low, high = c["low95"], c["high95"]
        shown = f"{signed(c['mean'], 4)}" + ("" if low is None else f" [{signed(low, 4)}, {signed(high, 4)}]")
        return f"{a} − {b}: {shown} ({ONE_SEED})"
    verb = outcome(c)
    if verb == "no difference shown":
        return f"{a} and {b} cannot be told apart ({fmt(c)})"
    if verb == "loses to":
        a, b = b, a
        c = dict(c, mean=-c["mean"], low=-c["high"], high=-c["low"])
    return f"{a} beats {b} by {fmt(c)}"


def head_to_head_sentence(comps: list[dict], columns: Sequence[str] = COLUMNS) -> str:
    """One head-to-head pair over its backbones and columns, in AUC: "IDs, head to head: all rows: rqgmm 2x256
    beats rqkmeans 2x256 by +0.0100 [...]; cold items: ..."."""
    several = len({c["backbone"] for c in comps}) > 1
    parts = [f"{WHERE[c['column']]}" + (f" ({c['backbone']})" if several else "") + f": {head_to_head(c)}"
             for column in columns for c in select(comps, column=column)]
    return f"{NAMES[comps[0]['variant']]}, head to head: " + "; ".join(parts) + "."


def _rivals(comps: list[dict]) -> list[tuple[str, str]]:
    """(label, baseline) of the head-to-head pairs present, in their order."""
    return list(dict.fromkeys((c["label"], c["baseline"]) for c in comps if c.get("rival")))


def _phrase(items: list[dict], several: bool) -> str:
    return ", ".join((f"{c['backbone']} " if several else "") + fmt(c) for c in items)


def pair_sentence(comps: list[dict]) -> str:
    """One sentence for one (regime, tokenizer, pair) over its backbones and columns."""
    first = comps[0]
    who = NAMES[first["variant"]] + (f" ({first['tokenizer']})" if first["tokenizer"] else "")
    several = len({c["backbone"] for c in comps}) > 1
    parts = []
    for verb in ("beats", "loses to"):
        for column in COLUMNS:
            hits = [c for c in comps if c["column"] == column and outcome(c) == verb]
            if hits:
                parts.append(f"{verb} {NAMES[first['baseline']]} by {_phrase(hits, several)} AUC on {WHERE[column]}")
    quiet = [column for column in COLUMNS
             if all(outcome(c) == "no difference shown" for c in comps if c["column"] == column)
             and any(c["column"] == column for c in comps)]
    if quiet:
        parts.append(f"on {', '.join(WHERE[c] for c in quiet)} no difference from {NAMES[first['baseline']]} is shown")
    return f"{who[0].upper()}{who[1:]}: " + "; ".join(parts) + "."


def _summary(comps: list[dict]) -> str:
    """One column of one pair over its backbones, briefly: "beats it with 3 of 4 backbones (+0.0043 to +0.0063)"."""
    if len(comps) == 1:
        return f"{outcome(comps[0])}{' it' if outcome(comps[0]) != 'no difference shown' else ''} {fmt(comps[0])}"
    parts = []
    for verb in ("beats", "loses to"):
        hits = sorted(c["mean"] for c in comps if outcome(c) == verb)
        if hits:
            span = signed(hits[0], 4) + ("" if len(hits) == 1 else f" to {signed(hits[-1], 4)}")
            parts.append(f"{verb} it with {len(hits)} of {len(comps)} backbones ({span})")
    return "; ".join(parts) or f"no difference shown with any of {len(comps)} backbones"


def brief_lines(comps: list[dict], columns: Sequence[str] = (OVERALL, "cold")) -> list[str]:
    """The verdict for the terminal: one line per regime × pair, on all rows and on cold items only."""
    lines = []
    for regime in ordered((c["regime"] for c in comps), ("side fields", "content only")):
        in_regime = select(comps, regime=regime)
        lines += [f"{regime}: " + _brief_head_to_head(select(in_regime, label=label, baseline=baseline), columns)
                  for label, baseline in _rivals(in_regime)]
        for *_, label, baseline in _pair_order(in_regime):
            pair = select(in_regime, label=label, baseline=baseline)
            first = pair[0]
            who = NAMES[first["variant"]] + (f" ({first['tokenizer']})" if first["tokenizer"] else "")
            said = [f"{WHERE[col]}: {_summary(select(pair, column=col))}" for col in columns
                    if select(pair, column=col)]
            lines.append(f"{regime}: {who} vs {NAMES[baseline]}: " + "; ".join(said))
    return lines


def _brief_head_to_head(comps: list[dict], columns: Sequence[str]) -> str:
    """One head-to-head pair for the terminal, summed up over its backbones like the lines against a baseline:
    "IDs, rqgmm 3x256 vs rqkmeans 3x256: all rows: no difference shown with any of 4 backbones; ..."; with one
    seed the span of the differences, labelled (never a win). Each interval is in report.md."""
    first = comps[0]
    a, b = first.get("name") or first["tokenizer"], first.get("rival_name") or first["rival"]
    said = []
    for column in columns:
        in_column = select(comps, column=column)
        if not in_column:
            continue
        if all(c.get("covers_training") for c in in_column):
            said.append(f"{WHERE[column]}: {_summary(in_column)}")
            continue
        means = sorted(c["mean"] for c in in_column)
        span = signed(means[0], 4) + ("" if len(means) == 1 else f" to {signed(means[-1], 4)}")
        said.append(f"{WHERE[column]}: {a} − {b} {span} ({ONE_SEED})")
    return f"{NAMES[first['variant']]}, {a} vs {b}: " + "; ".join(said)


def _pair_order(comps: list[dict]) -> list[tuple]:
    """(variant, tokenizer, label, baseline) of the pairs present, in the order of PAIRS, then tokenizer."""
    return sorted(dict.fromkeys((c["variant"], c["tokenizer"] or "", c["label"], c["baseline"]) for c in comps
                                if not c.get("rival")),
                  key=lambda p: (PAIRS.index((p[0], p[3])), p[1]))


def cold_share(comps: list[dict], regime: str, tokenizer: str) -> str | None:
    """The share of the embedding's cold-item gain over ``none`` that IDs alone recover, per backbone."""
    cold = select(comps, regime=regime, column="cold", rival=None)
    shares, without = [], []
    for emb in select(cold, label="embedding", baseline="none"):
        ids = select(cold, backbone=emb["backbone"], variant="ids", tokenizer=tokenizer)
        if not ids:
            continue
        if outcome(emb) != "beats":
            without.append(emb["backbone"])
        else:
            shares.append(f"{emb['backbone']} {100 * ids[0]['mean'] / emb['mean']:.0f}% "
                          f"({signed(ids[0]['mean'], 4)} of {signed(emb['mean'], 4)})")
    if without:
        shares.append(f"no share with {', '.join(without)}: the embedding shows no gain over no content on cold "
                      "items there")
    return f"Share of the embedding's cold-item gain that IDs alone ({tokenizer}) recover: {'; '.join(shares)}." \
        if shares else None


def verdict_lines(comps: list[dict]) -> list[str]:
    """The verdict in words: one line per regime × (pair, tokenizer), and the cold-gain shares."""
    lines = []
    for regime in ordered((c["regime"] for c in comps), ("side fields", "content only")):
        in_regime = select(comps, regime=regime)
        lines.append(f"Regime {regime}:")
        for *_, label, baseline in _pair_order(in_regime):
            lines.append("  " + pair_sentence(select(in_regime, label=label, baseline=baseline)))
        lines += ["  " + head_to_head_sentence(select(in_regime, label=label, baseline=baseline))
                  for label, baseline in _rivals(in_regime)]
        for tokenizer in ordered(c["tokenizer"] for c in in_regime):
            share = cold_share(in_regime, regime, tokenizer)
            if share:
                lines.append("  " + share)
    return lines


def sizes_note(comps: list[dict]) -> str | None:
    """How many test rows and users stand behind the intervals, per column: "all rows 12,000 rows of 820 users"."""
    said = []
    for column in COLUMNS:
        first = next(iter(select(comps, column=column)), None)
        if first is None or first.get("rows") is None:
            continue
        users = f" of {first['users']:,} users" if first.get("users") is not None else ""
        said.append(f"{WHERE[column]} {first['rows']:,} rows{users}")
    return "Test rows behind each interval: " + "; ".join(said) + "." if said else None


def short_note(comps: list[dict]) -> str:
    """The interval note in a few words, for the terminal."""
    kinds = "/".join(ordered(c["interval"] for c in comps))
    return f"{kinds} intervals, Holm-corrected over {max(c['family'] for c in comps)} comparisons"


INTERVAL_WORDS = {
    "bootstrap": "bootstrap: normal, with the standard error of a paired Poisson bootstrap over test users (1,000 "
                 f"resamples; one seed, so training noise is not covered: a tokenizer against another is then shown "
                 f"with its 95% interval, labelled \"{ONE_SEED}\", outside the correction and never called a win)",
    "seeds+users": "seeds+users: the test-user bootstrap's variance plus the variance of the per-seed differences "
                   "over the seeds (training noise), Student-t with Welch-Satterthwaite degrees of freedom",
    "t": "t: Student-t on the per-seed differences (2 or more seeds; the runs' predictions not at hand)",
    "none": "no interval (one value)",
}


def interval_note(comps: list[dict]) -> str:
    """What the intervals are: their kinds, the correction, the family size, the test rows behind them."""
    kinds = ordered(c["interval"] for c in comps)
    family = max((c["family"] for c in comps), default=0)
    sizes = sizes_note(comps)
    return (f"Intervals: {'; '.join(INTERVAL_WORDS[k] for k in kinds)}; Holm-corrected over the {family} comparisons "
            "of this verdict (each interval drawn at its Holm level, 5% family-wise error), so \"beats\" means the "
            "corrected interval lies above 0." + (f" {sizes}" if sizes else ""))


# ----------------------------------------------------------------------------- the recommendation


def _mean_over_backbones(comps: list[dict], column: str) -> float | None:
    values = [c["mean"] for c in comps if c["column"] == column]
    return float(np.mean(values)) if values else None


def _gains(comps: list[dict]) -> dict[str, dict]:
    """The IDs configurations that beat their baseline on all rows with some backbone and lose with none."""
    gains = {}
    for *_, label, baseline in _pair_order(comps):
        pair = select(comps, label=label, baseline=baseline)
        if pair[0]["variant"] not in ID_VARIANTS:
            continue
        said = {outcome(c) for c in select(pair, column=OVERALL)}
        if "beats" in said and "loses to" not in said:
            gains[label] = dict(first=pair[0], all=_mean_over_backbones(pair, OVERALL),
                                cold=_mean_over_backbones(pair, "cold"), backbones=len({c["backbone"] for c in pair}),
                                beats=sum(outcome(c) == "beats" for c in select(pair, column=OVERALL)))
    return gains


def _beaten(label: str, comps: list[dict]) -> bool:
    """Whether another configuration of the same variant beats ``label`` head to head on all rows (2+ seeds)."""
    for c in select(comps, column=OVERALL):
        if c.get("rival") and c.get("covers_training"):
            if (c["label"] == label and outcome(c) == "loses to") or (c["baseline"] == label and outcome(c) == "beats"):
                return True
    return False


def recommendation(comps: list[dict], costs: dict[str, dict]) -> str:
    """The verdict's first line: the cheapest IDs configuration that beats its baseline on all rows and that no
    other configuration beats, with its gain and serving cost; or, plainly, that none beats its baseline.

    ``costs`` maps a variant label to its CTR record's ``bytes_per_item`` and ``content_parameters``. The first
    regime present (side fields before content only) decides.
    """
    if not comps:
        return "No comparison to recommend from."
    regime = ordered((c["regime"] for c in comps), ("side fields", "content only"))[0]
    in_regime = select(comps, regime=regime)
    gains = {k: v for k, v in _gains(in_regime).items() if not _beaten(k, in_regime)}
    if not gains:
        return f"Recommendation ({regime}): {_none_beats(in_regime)}"
    label = min(gains, key=lambda k: (costs.get(k, {}).get("bytes_per_item", 0), -gains[k]["all"]))
    first, cost = gains[label]["first"], costs.get(label, {})
    gain = gains[label]
    cold = "" if gain["cold"] is None else f", {signed(gain['cold'], 4)} on cold items"
    mean = "" if gain["backbones"] == 1 else (f" (means over {gain['backbones']} backbones; it beats the baseline "
                                              f"with {gain['beats']})")
    return (f"Recommendation ({regime}): use {NAMES[first['variant']]} ({first.get('name') or first['tokenizer']}): "
            f"{signed(gain['all'], 4)} AUC over {NAMES[first['baseline']]} on all rows{cold}{mean}; serving cost "
            f"{cost.get('bytes_per_item', 0):,} B/item, {cost.get('content_parameters', 0):,} parameters (the "
            "cheapest configuration that beats its baseline and that no other beats).")


def _none_beats(comps: list[dict]) -> str:
    """The plain word when no IDs configuration beats its baseline on all rows."""
    said = []
    if select(comps, variant="ids+embedding", rival=None):
        said.append("no IDs configuration adds to the embedding on all rows: keep the embedding")
    if select(comps, variant="ids", rival=None):
        said.append("the IDs add nothing over item id and the side fields")
    return ("; ".join(said) or "no IDs configuration beats its baseline on all rows") + "."
