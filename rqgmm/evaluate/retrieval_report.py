"""The generative-retrieval section of ``report.md`` and its plot (records of kind ``retrieval``).

The section opens with the verdict in words (:mod:`.retrieval_verdict`: the
best method on all, warm and cold targets, Holm-corrected intervals). Cells
are the mean over seeds (± the sample std); the Recall@10 differences from the
controls carry the verdict's interval (a bootstrap over test users, plus the
between-seed variance from 2 seeds: never a bare one-seed mean), uncorrected.
"""

from __future__ import annotations

from pathlib import Path

from rqgmm.retrieval.metrics import KS
from rqgmm.retrieval.vocab import ITEM_ID, RANDOM
from rqgmm.evaluate.names import COLD_TWINS
from rqgmm.evaluate.retrieval_verdict import (NOT_SEMANTIC, TARGETS, interval_words, is_semantic, recall_differences,
                                              retrieval_comparisons, twin_base, verdict_words)
from rqgmm.evaluate import plots
from rqgmm.evaluate.slices import SLICES
from rqgmm.evaluate.tables import (FIRST_TOKENIZERS, fmt_difference, fmt_mean_std, markdown_table, ordered, select,
                                   signed)

OVERALL = "all"


#: The controls and baselines, in the order the tables list them.
CONTROLS = NOT_SEMANTIC


def id_kinds(recs: list[dict]) -> list[str]:
    """Tokenizers first (rqgmm, rqkmeans, then the rest), then random IDs, the item-ID model and the baselines;
    each row followed by its cold-placement twins (``+tiger``, ``+dense``)."""
    names = {r["ids"] for r in recs}
    bases = ordered((twin_base(n) for n in names), FIRST_TOKENIZERS)
    bases = [b for b in bases if b not in CONTROLS] + [b for b in CONTROLS if b in bases]
    return [n for b in bases for n in (b, *(b + suffix for suffix in COLD_TWINS.values())) if n in names]


def retrieval_verdict(records: list[dict]) -> list[str]:
    """The retrieval verdict's sentences of one dataset's records (none without retrieval records)."""
    recs = [r for r in select(records, kind="retrieval") if "targets" in r]
    if not recs:
        return []
    comps = retrieval_comparisons(recs, id_kinds(recs))
    return [interval_words(comps), *verdict_words(comps)] if comps else []


def _target_sizes(recs: list[dict]) -> dict[str, int]:
    """The test users of each target set (all, warm, cold), from the first record."""
    return {t: recs[0].get("targets", {}).get(t, {}).get("n", 0) for t in TARGETS}


def _target_table(recs: list[dict]) -> str:
    rows = [[ids, *(fmt_mean_std([r["targets"][t]["recall@10"] for r in select(recs, ids=ids)
                                  if "targets" in r]) for t in TARGETS)] for ids in id_kinds(recs)]
    n = _target_sizes(recs)
    return markdown_table(["method", *(f"item recall@10 {t} ({n[t]:,} users)" for t in TARGETS)], rows)


def value(record: dict, column: str, key: str, level: str = "item") -> float | None:
    """An item-level (or ID-level) metric over every test user or one popularity slice."""
    return record[level][key] if column == OVERALL else record["slices"][column][key]


def _depth_words(recs: list[dict]) -> list[str]:
    """The prefix rule's depth per semantic-ID run, chosen on the validation split (none without a prefix rule)."""
    runs = [r for r in recs if r.get("cold_depth") is not None]
    if not runs:
        return []
    return ["", "Prefix rule: a cold item is a candidate when its first d codes equal a generated item's; it "
                "enters after the warm items likelier than pi times its prefix's first generated item (w = log pi, "
                "pi: the validation share of cold targets), or right after that item in the "
                f"'{COLD_TWINS['tiger']}' rows (TIGER's placement, w = 0: the cap's slots go to cold items, at the "
                "cost of the warm items they push down); d is the depth with the highest validation Recall@10 over "
                "the cold targets, then over all targets, then the deepest, chosen for each placement (validation "
                "cold / all Recall@10 by d): " + "; ".join(_depth_run(r) for r in runs) + "."]


def _depth_run(record: dict) -> str:
    """"rqkmeans seed 0: d = 1, w −3.03 (1: 0.0294 / 0.4005, ...)"."""
    by = record["depth_recall"]
    scores = ", ".join(f"{d}: {by['cold'][d]:.4f} / {by['all'][d]:.4f}" for d in by.get("cold", {}))
    return (f"{record['ids']} seed {record['seed']}: d = {record['cold_depth']}, w "
            f"{signed(record['cold_weight'], 2)}" + (f" ({scores})" if scores else ""))


def _metric_table(recs: list[dict]) -> str:
    keys = [f"{m}@{k}" for m in ("recall", "ndcg") for k in KS]
    rows = [[ids, *(fmt_mean_std([value(r, OVERALL, k) for r in select(recs, ids=ids)]) for k in keys)]
            for ids in id_kinds(recs)]
    return markdown_table(["IDs", *(f"item {k}" for k in keys)], rows)


def _inflation_table(recs: list[dict]) -> str:
    rows = []
    for ids in id_kinds(recs):
        group = select(recs, ids=ids)
        rows.append([ids, f"{group[0]['shared_items']:,}",
                     *(fmt_mean_std([value(r, OVERALL, f"recall@{k}", "id") for r in group]) for k in KS),
                     *(fmt_mean_std([r["inflation"][f"recall@{k}"] for r in group], 3) for k in KS)])
    header = ["IDs", "items sharing their ID", *(f"ID-level recall@{k}" for k in KS),
              *(f"inflation @{k}" for k in KS)]
    return markdown_table(header, rows)


def _slice_table(recs: list[dict]) -> str:
    rows = [[ids, *(fmt_mean_std([value(r, c, "recall@10") for r in select(recs, ids=ids)]) for c in SLICES)]
            for ids in id_kinds(recs)]
    return markdown_table(["IDs", *(f"item recall@10 {c}" for c in SLICES)], rows)


def _difference_table(recs: list[dict]) -> str | None:
    """Recall@10 of each semantic-ID row minus random IDs' and the item-ID model's, on all, warm and cold targets,
    with the verdict's 95% interval (:func:`~.retrieval_verdict.recall_differences`), not Holm-corrected."""
    names = id_kinds(recs)
    compared = [(ids, base) for base in (RANDOM, ITEM_ID) for ids in names if is_semantic(ids) and base in names]
    diffs = iter(recall_differences([(select(recs, ids=ids), select(recs, ids=base), target)
                                     for ids, base in compared for target in TARGETS]))
    rows = []
    for ids, base in compared:
        cells = []
        for _ in TARGETS:
            diff = next(diffs)
            low, high = diff.interval(0.05) if diff is not None else (None, None)
            cells.append(fmt_difference(None if diff is None else dict(mean=diff.mean, low=low, high=high, n=diff.n)))
        rows.append([f"{ids} − {base}", *cells])
    n = _target_sizes(recs)
    header = ["comparison", *(f"recall@10 {t} ({n[t]:,} users)" for t in TARGETS)]
    return markdown_table(header, rows) if rows else None


def retrieval_section(records: list[dict]) -> list[str]:
    """The section's markdown lines (none without retrieval records)."""
    recs = select(records, kind="retrieval")
    if not recs:
        return []
    first = recs[0]
    sizes = ", ".join(f"{c} {first['slices'][c]['n']}" for c in SLICES)
    verdict = retrieval_verdict(recs)
    lines = ["## Generative retrieval (next item over ID tokens, trie-constrained beam search)", ""]
    if verdict:
        lines += ["### Retrieval verdict", "", verdict[0], "", *(f"- {line}" for line in verdict[1:]), "",
                  "Item-level Recall@10 on all, warm and cold test targets (mean ± std over seeds):", "",
                  _target_table(recs), ""]
    lines += [f"{first['users']:,} test users ({first['dropped_users']:,} dropped with fewer than 3 "
             f"{'positive ' if first['sequence'] == 'positives' else ''}items); test items per slice: {sizes}. "
             "Item level: a generated ID shared by m items ranks those m items by training popularity (the "
             "collision correction); ID level counts a shared ID as a hit. Controls: random IDs (the first "
             "tokenizer's ID rows dealt to the items at random) and the item-ID model (one token per item); baselines: "
             "most-popular (training counts) and content KNN (cosine to the recency-weighted mean embedding of the "
             "user's last 5 items). No method removes the user's earlier items from its list. With generated dedup "
             "tokens every ID is one item (item level = ID level before cold items join by the prefix rule, or by the "
             f"dense re-rank in the '{COLD_TWINS['dense']}' rows: a cold item enters where its log-probability under "
             "the model's projected state exceeds a beam item's).", *_depth_words(recs), "",
             _metric_table(recs), "", "ID level and its inflation over the item level (ID / item − 1):", "",
             _inflation_table(recs), "", "Item-level Recall@10 by popularity slice of the test item:", "",
             _slice_table(recs), ""]
    diff = _difference_table(recs)
    if diff:
        lines += ["Item-level Recall@10 differences, mean [95% interval: normal, from a bootstrap over test users "
                  "(each user's hit averaged over the seeds) plus, from 2 seeds, the between-seed variance; not "
                  "Holm-corrected, the verdict's are]:", "", diff, ""]
    return lines


def plot_retrieval(records: list[dict], out_dir: Path) -> list[Path]:
    """Per dataset: item-level Recall@10 by popularity slice, one bar per kind of IDs."""
    recs, paths = select(records, kind="retrieval"), []
    for dataset in ordered(r["dataset"] for r in recs):
        group, columns = select(recs, dataset=dataset), [OVERALL, *SLICES]
        series = {ids: tuple(map(list, zip(*(plots._mean_err([value(r, c, "recall@10") for r in
                                                               select(group, ids=ids)]) for c in columns))))
                  for ids in id_kinds(group)}
        fig, ax = plots.plt.subplots(figsize=(7.5, 4.0))
        plots._grouped_bars(ax, columns, series)
        ax.set_ylabel("item-level Recall@10 (mean ± std over seeds)")
        ax.set_title(f"{dataset}: generative retrieval by popularity slice")
        ax.legend(fontsize=7, loc="upper left", frameon=False)
        ax.grid(axis="y", alpha=0.3)
        paths.append(plots._save(fig, out_dir, f"retrieval_{plots._safe(dataset)}"))
    return paths
