"""What a user must know before trusting the verdict: each a one-line warning with what to do.

Read from the records of one evaluation (no data needed):

- the tokenizers' own warnings (EM not converged, few distinct vectors, a
  codebook shrunk to the distinct vectors), caught while fitting;
- degenerate IDs: more than half the items share their full ID (stated beside
  the share sharing their embedding vector; more levels or codes advised only
  when the IDs merge items whose vectors differ), or a level uses less than
  10% of its codes;
- near-duplicate embeddings: far fewer distinct vectors than items (the
  ``inputs`` record);
- a popularity slice with too few test rows (or one label) for an AUC.
"""

from __future__ import annotations

from collections.abc import Sequence

from rqgmm.evaluate.slices import MIN_SLICE_ROWS, SLICES
from rqgmm.evaluate.tables import ordered, select

SHARED_ID_SHARE = 0.5
LOW_UTILIZATION = 0.1
#: Distinct vectors below this share of the items count as near-duplicate embeddings.
DISTINCT_SHARE = 0.5
#: More levels or codes are advised when IDs merge more than this share of the items with a different vector.
MERGED_SHARE = 0.05


def _tokenizer_caveats(recs: list[dict], deduped: bool = False) -> list[str]:
    """``deduped``: only the retrieval task reads the IDs, with a generated dedup token (every ID one item)."""
    out = []
    for method in ordered(r["tokenizer"] for r in recs):
        group = select(recs, tokenizer=method)
        for message in ordered(m for r in group for m in r.get("warnings") or []):
            out.append(f"tokenizer {method}: {message.rstrip('.')}; the IDs may be unstable: compare seeds, or pass "
                       "fewer --levels or a smaller --codebook-size")
        worst = max(group, key=lambda r: r["shared_items"])
        if worst["shared_items"] > SHARED_ID_SHARE:
            out.append(_shared_id_caveat(method, worst, deduped))
        for level, use in enumerate(min(lv) for lv in zip(*(r["utilization"] for r in group if r.get("utilization")))):
            if use < LOW_UTILIZATION:
                out.append(f"tokenizer {method}: level {level + 1} uses {100 * use:.1f}% of its codes; pass a smaller "
                           "--codebook-size (or fewer --levels)")
    return out


def _shared_id_caveat(method: str, record: dict, deduped: bool = False) -> str:
    """Items sharing a full ID, against items sharing their embedding vector; more levels or codes advised only
    where the IDs merge items whose vectors differ (records before that figure keep the older advice). With
    ``deduped`` the line says that the retrieval task's dedup token tells such items apart, by an index alone."""
    fact = f"tokenizer {method}: {100 * record['shared_items']:.1f}% of the items share their full ID with another item"
    if deduped:
        fact += (" (the retrieval task's generated dedup token makes each ID one item, but tells those items apart by "
                 "an index that carries no content)")
    if "merged_items" not in record:
        return (f"{fact}; the IDs cannot tell those items apart: check the embeddings (distinct vectors), or pass "
                "more --levels or a larger --codebook-size")
    fact += f", {100 * record['shared_vectors']:.1f}% share their embedding vector"
    merged = record["merged_items"]
    if merged > MERGED_SHARE:
        return (f"{fact}; the IDs merge {100 * merged:.1f}% of the items with an item whose embedding differs: "
                "pass more --levels or a larger --codebook-size")
    return (f"{fact}; only {100 * merged:.1f}% share an ID with an item whose embedding differs, so more levels or "
            "codes would not separate them: the embedding does not; embed richer item text (e.g. "
            "`rqgmm embed --text title,description`) or keep the IDs as they are")


def _input_caveats(recs: list[dict]) -> list[str]:
    out = []
    for record in recs:
        for column, distinct in record["distinct_vectors"].items():
            if distinct < DISTINCT_SHARE * record["items"]:
                out.append(f"embedding {column!r}: only {distinct:,} distinct vectors for {record['items']:,} items "
                           "(near-duplicates); IDs cannot separate items the embedding does not: embed richer item "
                           "text (e.g. `rqgmm embed --text title,description`)")
    return out


def _slice_caveats(recs: list[dict]) -> list[str]:
    """Every CTR run scores the same test rows: the first record's slices tell."""
    out = []
    for name in SLICES[: len(SLICES) if recs else 0]:
        n = recs[0]["slices"][name]["n"]
        if recs[0]["slices"][name].get("auc") is None:
            why = f"{n} test rows" if n < MIN_SLICE_ROWS else f"{n} test rows, with one label value only"
            out.append(f"slice {name}: {why}; no AUC and no verdict there: pass a longer log to judge {name} items")
    return out


def caveats(records: Sequence[dict]) -> list[str]:
    """The warnings of one dataset's records, one line each, each ending in what to do."""
    retrieval = select(records, kind="retrieval")
    deduped = bool(retrieval) and not select(records, kind="ctr") and all(
        r.get("dedup") == "generated" for r in retrieval if r.get("dedup"))
    return (_tokenizer_caveats(select(records, kind="tokenizer"), deduped)
            + _input_caveats(select(records, kind="inputs")) + _slice_caveats(select(records, kind="ctr")))
