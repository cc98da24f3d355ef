"""The checks of each tokenizer's IDs against the training rows that need no CTR training (issue 26, item 7).

One ``diagnostic`` record per (configuration, seed, modality): per level, the co-click coherence lift and
the click-rate R², each beside its expectation under random IDs (:mod:`rqgmm.ids.diagnostics`). The
report shows them by configuration and, over three or more configurations, the Spearman rank correlation
of each deepest-level figure with the trained models' mean AUC on all rows (``ids`` variant), so a user
learns whether the cheap check predicts the expensive one.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from rqgmm.ids.diagnostics import ClickFacts
from rqgmm.evaluate.tables import fmt_mean_std, markdown_table, ordered, select

#: Fewer configurations than this give no rank correlation.
MIN_CONFIGURATIONS = 3


def diagnostic_records(stage, train, config) -> list[dict]:
    """One record per tokenizer held by ``stage``, from the training rows ``train`` (a LogPart)."""
    if not stage.codes:
        return []
    items, users, clicked = train[config.item], train[config.user], train[config.label] > 0
    known = items >= 0
    if not known.all():  # rows of items the table lacks (no copies of the log when there are none)
        items, users, clicked = items[known], users[known], clicked[known]
    facts = ClickFacts.of(items, users, clicked, len(next(iter(stage.codes.values()))[0]))
    return [stage.record("diagnostic", tokenizer=label, seed=seed, modality=name, **facts.diagnostics(codes))
            for (label, seed, name), (codes, _) in stage.codes.items()]


def _mean_auc(records: list[dict], tokenizer: str) -> float | None:
    aucs = [r["auc"] for r in select(records, kind="ctr", tokenizer=tokenizer, variant="ids") if r.get("auc")]
    return float(np.mean(aucs)) if aucs else None


def _correlations(records: list[dict], rows: list[tuple[str, float, float]]) -> list[str]:
    """Spearman's rho of each diagnostic with the mean ``ids`` AUC over the configurations that have one."""
    kept = [(lift, r2, auc) for name, lift, r2 in rows if (auc := _mean_auc(records, name)) is not None]
    if len(kept) < MIN_CONFIGURATIONS:
        return []
    lifts, r2s, aucs = zip(*kept)
    rho_lift, rho_r2 = stats.spearmanr(lifts, aucs)[0], stats.spearmanr(r2s, aucs)[0]
    return [f"Rank correlation with the `ids` AUC on all rows over {len(kept)} configurations: co-click lift "
            f"{rho_lift:+.2f}, click-rate R² {rho_r2:+.2f}.", ""]


def diagnostics_section(records: list[dict]) -> list[str]:
    """The report's table of the diagnostics (deepest level), mean ± std over seeds, and the rank correlations."""
    recs = select(records, kind="diagnostic")
    if not recs:
        return []
    table, rows = [], []
    for name in ordered(r["tokenizer"] for r in recs):
        for modality in ordered(r["modality"] for r in select(recs, tokenizer=name)):
            group = select(recs, tokenizer=name, modality=modality)
            deepest = [(r["coherence"][-1], r["r2"][-1]) for r in group]
            lifts = [c["lift"] for c, _ in deepest if c["lift"] is not None]
            r2s = [r["r2"] for _, r in deepest if r["r2"] is not None]
            table.append([name, modality, f"{group[0]['pairs']:,}", fmt_mean_std(lifts, 2),
                          fmt_mean_std([c["observed"] for c, _ in deepest if c["observed"] is not None], 3),
                          fmt_mean_std([c["expected"] for c, _ in deepest], 3), fmt_mean_std(r2s, 3),
                          fmt_mean_std([r["expected"] for _, r in deepest if r["expected"] is not None], 3)])
            if lifts and r2s:
                rows.append((name, float(np.mean(lifts)), float(np.mean(r2s))))
    header = ["tokenizer", "fitted on", "positive pairs", "co-click lift", "pairs sharing the ID",
              "at random", "click-rate R²", "R² at random"]
    return ["## Diagnostics without training (training rows, full IDs)", "", markdown_table(header, table), "",
            *_correlations(records, rows)]
