"""The retrieval verdict: which method retrieves best on all, warm and cold test targets, in words.

For each target set (every test user; those whose test item is in a training
sequence, warm; the rest, cold) the method with the highest mean item-level
Recall@10 is compared with every other method: the paired difference, its
standard error from a Poisson bootstrap over test users
(:class:`~rqgmm.evaluate.intervals.UserBootstrap`, each user's hit averaged
over the seeds) plus, from 2 seeds, the between-seed variance
(:func:`~rqgmm.evaluate.intervals.seed_difference`); a normal interval. The p-values of every comparison of
the dataset form one family corrected by Holm (:func:`~rqgmm.evaluate.tables.holm`);
each interval is drawn at its Holm level, so "beats" means the corrected
interval lies above 0.

Two questions get a sentence each, their comparisons in the same Holm family. Do semantic IDs pay: the
semantic-ID row with the best Recall@10 on all targets against most-popular (do they beat popularity?) and
against the item-ID model (how close do they come to item IDs?). The cold question (issue 27): the semantic-ID row
(tokenizer, with any cold rule or placement) with the best cold Recall@10, its cold
Recall@10 with an interval (does it reach cold items at all?) and its
difference from content KNN (which serves cold items better?); both join the
Holm family.
"""

from __future__ import annotations

import numpy as np

from rqgmm.evaluate.names import COLD_TWINS
from rqgmm.evaluate.intervals import Difference, UserBootstrap, seed_difference
from rqgmm.evaluate.tables import holm, select, signed
from rqgmm.retrieval.baselines import CONTENT_KNN, MOST_POPULAR
from rqgmm.retrieval.vocab import ITEM_ID, RANDOM

TARGETS = ("all", "warm", "cold")
KEY = "recall@10"
ALPHA = 0.05
#: Rows that are not semantic IDs: the controls and the baselines.
NOT_SEMANTIC = (RANDOM, ITEM_ID, MOST_POPULAR, CONTENT_KNN)


def twin_base(name: str) -> str:
    """The model row a cold-placement twin belongs to (``rqgmm+tiger`` -> ``rqgmm``); other names unchanged."""
    for suffix in COLD_TWINS.values():
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def is_semantic(name: str) -> bool:
    """Whether a row is a tokenizer's semantic IDs, under any cold placement (random IDs' twins are controls)."""
    return twin_base(name) not in NOT_SEMANTIC


def _recall(recs: list[dict], target: str) -> dict[int, float]:
    return {r["seed"]: r["targets"][target][KEY] for r in recs if r["targets"][target][KEY] is not None}


def _hits(recs: list[dict], users: np.ndarray) -> np.ndarray:
    """Each of ``users``' hit at rank <= 10, averaged over the runs' seeds: (n,) float."""
    hit = np.zeros(recs[0]["users"])
    for r in recs:
        hit[r["hits@10"]] += 1.0 / len(recs)
    return hit[users]


def recall_difference(a: list[dict], b: list[dict] | None, target: str) -> Difference | None:
    """Recall@10 of a − b on the target set (b None: a alone), averaged over the common seeds, with its std error.

    The error always holds the user sampling (a Poisson bootstrap over the set's users, each user's hit
    averaged over the seeds); from 2 seeds the between-seed variance of the per-seed differences (its
    Student-t standard error, :func:`seed_difference`) is added. Across seeds alone, a baseline without
    seed variance against a model with none on a few cold users gives an interval of width 0.
    """
    return recall_differences([(a, b, target)])[0]


def recall_differences(pairs: list[tuple[list[dict], list[dict] | None, str]]) -> list[Difference | None]:
    """:func:`recall_difference` of each (a, b, target), the bootstrap's weights drawn once for every pair on the
    same users (one pass of 1,000 x users draws per target set, not one per pair: on 99,957 users each pass
    takes about a second)."""
    found: list[Difference | None] = [None] * len(pairs)
    groups: dict[bytes, tuple[np.ndarray, list]] = {}  # users' bytes -> (users, [(pair, d, mean, seed se, seeds)])
    for i, (a, b, target) in enumerate(pairs):
        left = _recall(a, target)
        right = _recall(b, target) if b is not None else dict.fromkeys(left, 0.0)
        seeds = sorted(set(left) & set(right))
        if not seeds:
            continue
        a = [r for r in a if r["seed"] in seeds]
        users = _users(a[0], target)
        d = _hits(a, users) - (_hits([r for r in b if r["seed"] in seeds], users) if b is not None else 0.0)
        across = seed_difference([left[s] for s in seeds], [right[s] for s in seeds])
        groups.setdefault(users.tobytes(), (users, []))[1].append((i, d, float(d.mean()), across.se or 0.0,
                                                                    len(seeds)))
    for users, members in groups.values():
        n = len(users)
        centred = np.stack([(d - mean) / n for _, d, mean, _, _ in members], axis=1).astype(np.float32)
        shifts = UserBootstrap(np.zeros(n), np.arange(n)).shifts(centred)
        for column, (i, _, mean, across_se, n_seeds) in enumerate(members):
            se = float(np.hypot(shifts[:, column].std(ddof=1), across_se))
            found[i] = Difference(mean, "bootstrap", n_seeds, samples=mean + shifts[:, column], se=se)
    return found


def _users(record: dict, target: str) -> np.ndarray:
    """The test users (rows) of a target set."""
    cold = np.zeros(record["users"], dtype=bool)
    cold[record["cold_users"]] = True
    return np.flatnonzero({"all": np.ones_like(cold), "warm": ~cold, "cold": cold}[target])


def retrieval_comparisons(recs: list[dict], methods: list[str], alpha: float = ALPHA) -> list[dict]:
    """The best method of each target set against every other, Holm-corrected over the whole family.

    Returns one dict per comparison: target, best, other, means, mean (difference), low, high (at its
    Holm level; None without an interval), kind, p_holm, n_users.
    """
    out = []
    for target in TARGETS:
        means = _means(recs, methods, target)
        if not means or not recs[0]["targets"][target]["n"]:
            continue
        best = _leader(means, methods)
        for other in means:
            if other != best:
                out.append(dict(target=target, best=best, other=other, best_mean=float(means[best]),
                                other_mean=float(means[other]), n_users=recs[0]["targets"][target]["n"],
                                question=None, pair=(select(recs, ids=best), select(recs, ids=other), target)))
    out += _semantic_question(recs, methods) + _cold_question(recs, methods)
    for c, diff in zip(out, recall_differences([c.pop("pair") for c in out])):
        c["diff"] = diff
    tested = [c for c in out if c["diff"] is not None and c["diff"].kind != "none"]
    adjusted, levels = holm([c["diff"].p_value() for c in tested], alpha) if tested else ([], [])
    for c in out:
        c.update(mean=c["diff"].mean if c["diff"] else None, kind=c["diff"].kind if c["diff"] else "none",
                 low=None, high=None, p_holm=None, family=len(tested))
    for c, p, level in zip(tested, adjusted, levels):
        c["low"], c["high"] = c["diff"].interval(level)
        c["p_holm"] = float(p)
    return out


def _best_semantic(recs: list[dict], methods: list[str], target: str) -> tuple[str, float] | None:
    """The semantic-ID row (tokenizer, with any cold rule) with the best mean Recall@10 on ``target``, and that
    mean; None without one."""
    means = _means(recs, [m for m in methods if is_semantic(m)], target)
    if not means:
        return None
    best = _leader(means, methods)
    return best, float(means[best])


def _means(recs: list[dict], methods: list[str], target: str) -> dict[str, float]:
    """Each method's mean Recall@10 over its seeds on ``target``; methods without a value left out."""
    means = {m: np.mean(list(_recall(select(recs, ids=m), target).values()) or [np.nan]) for m in methods}
    return {m: v for m, v in means.items() if np.isfinite(v)}


def _leader(means: dict[str, float], methods: list[str]) -> str:
    """The method with the highest mean; ties go to the one listed first in ``methods``."""
    return max(means, key=lambda m: (means[m], -methods.index(m)))


def _against(recs: list[dict], best: tuple[str, float], target: str, question: str,
             others: list[str | None]) -> list[dict]:
    """The comparisons of the ``best`` semantic-ID row (name, mean) on ``target`` with each of ``others`` (None:
    against 0) that has records, as :func:`retrieval_comparisons` gives them, under ``question``."""
    rows = select(recs, ids=best[0])
    common = dict(target=target, best=best[0], best_mean=best[1], n_users=recs[0]["targets"][target]["n"])
    out = []
    for other in others:
        theirs = None if other is None else select(recs, ids=other)
        mean = 0.0 if other is None else np.mean(list(_recall(theirs, target).values()) or [np.nan])
        if np.isfinite(mean):
            out.append(dict(common, question=question if other is None else f"{question}:{other}", other=other,
                            other_mean=float(mean), pair=(rows, theirs, target)))
    return out


def _semantic_question(recs: list[dict], methods: list[str]) -> list[dict]:
    """The best semantic-ID row on all targets against most-popular and the item-ID model (the question a
    retrieval study asks first: do the IDs beat popularity, and how close do they come to item IDs?)."""
    best = _best_semantic(recs, methods, "all")
    others = [m for m in (MOST_POPULAR, ITEM_ID) if m in methods]
    return _against(recs, best, "all", "semantic", others) if best and others else []


def _cold_question(recs: list[dict], methods: list[str]) -> list[dict]:
    """The best semantic-ID row on cold targets: its Recall@10 ("reach", against 0) and its difference from
    content KNN ("knn"); none without cold targets, a semantic-ID row or content KNN."""
    if not recs[0]["targets"]["cold"]["n"] or CONTENT_KNN not in methods:
        return []
    best = _best_semantic(recs, methods, "cold")
    if best is None or not _recall(select(recs, ids=CONTENT_KNN), "cold"):
        return []
    reach, knn = _against(recs, best, "cold", "cold", [None, CONTENT_KNN])
    return [dict(reach, question="reach"), dict(knn, question="knn")]


def _interval(c: dict) -> str:
    return "no interval" if c["low"] is None else f"[{signed(c['low'], 4)}, {signed(c['high'], 4)}]"


def _said(c: dict) -> str:
    return f"{c['other']} ({signed(c['mean'], 4)} {_interval(c)})"


def verdict_words(comps: list[dict]) -> list[str]:
    """One sentence per target set: the best method, whom it beats and where no difference is shown."""
    lines = []
    for target in TARGETS:
        group = [c for c in comps if c["target"] == target and c["question"] is None]
        if not group:
            continue
        best = group[0]
        beats = [_said(c) for c in group if c["low"] is not None and c["low"] > 0]
        level = [_said(c) for c in group if not (c["low"] is not None and c["low"] > 0)]
        text = (f"{target} targets ({best['n_users']:,} users): {best['best']} retrieves best, item Recall@10 "
                f"{best['best_mean']:.4f}")
        text += f"; it beats {', '.join(beats)}" if beats else ""
        text += f"; no difference shown from {', '.join(level)}" if level else ""
        lines.append(text + ".")
    return lines + semantic_words(comps) + cold_words(comps)


def _outcome(c: dict, better: str, worse: str) -> str:
    if c["low"] is not None and c["low"] > 0:
        return better
    if c["high"] is not None and c["high"] < 0:
        return worse
    return "no difference shown"


def semantic_words(comps: list[dict]) -> list[str]:
    """One sentence: the best semantic-ID row on all targets against most-popular and the item-ID model."""
    group = [c for c in comps if (c["question"] or "").startswith("semantic:")]
    if not group:
        return []
    first = group[0]
    text = (f"Semantic IDs ({first['n_users']:,} users, all targets): the best semantic-ID row, {first['best']}, "
            f"item Recall@10 {first['best_mean']:.4f}")
    parts = []
    for c in group:
        name = "the item-ID model" if c["other"] == ITEM_ID else c["other"]
        ratio = f", {first['best_mean'] / c['other_mean']:.2f}x" if c["other_mean"] > 0 else ""
        parts.append(f"against {name} ({c['other_mean']:.4f}{ratio}) {signed(c['mean'], 4)} {_interval(c)}: "
                     + _outcome(c, f"it beats {name}", f"{name} retrieves better"))
    return [text + "; " + "; ".join(parts) + "."]


def cold_words(comps: list[dict]) -> list[str]:
    """One sentence: whether semantic IDs reach cold items, and whether they or content KNN serve them better."""
    reach = next((c for c in comps if c["question"] == "reach"), None)
    knn = next((c for c in comps if c["question"] == "knn"), None)
    if reach is None or knn is None:
        return []
    above = reach["low"] is not None and reach["low"] > 0
    found = (f"has cold Recall@10 {reach['best_mean']:.4f} {_interval(reach)}" if reach["best_mean"] > 0 else
             "retrieves no cold target at any seed")  # all zeros: a bootstrap interval of width 0 says nothing
    text = (f"Cold items ({reach['n_users']:,} users): the best semantic-ID row, {reach['best']}, {found}, so semantic "
            f"IDs {'reach cold items' if above else 'are not shown to reach cold items'}; content KNN "
            f"{knn['other_mean']:.4f}, difference {signed(knn['mean'], 4)} {_interval(knn)}: ")
    return [text + {"better": "semantic IDs serve cold items better than content KNN.",
                    "worse": "content KNN serves cold items better than semantic IDs.",
                    "no difference shown": "neither is shown to serve cold items better."}[
                        _outcome(knn, "better", "worse")]]


def interval_words(comps: list[dict]) -> str:
    """How the intervals were drawn, in one sentence."""
    seeds = max((c["diff"].n for c in comps if c["diff"]), default=1)
    how = "normal, bootstrap over test users (Poisson, 1,000 resamples)" + (
        f" plus the between-seed variance of {seeds} seeds" if seeds > 1 else "")
    family = max((c["family"] for c in comps), default=0)
    return (f"Differences in item Recall@10 (best − other), intervals: {how}; Holm-corrected over the {family} "
            "comparisons of this verdict (5% family-wise error), so \"beats\" means the corrected interval lies "
            "above 0.")
