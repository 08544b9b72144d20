"""Model drift or corpus drift: when a day's model version is not its reference's, the two
versions are compared on the same items (the rows a shadow or canary run left beside the
champion's), with the champion-versus-challenger comparison of rollout/compare.py. Versions that
disagree on the same items are the cause ("model"); versions that agree leave the corpus
("corpus"); fewer than `min_rows` items with rows of both leave it "unknown", and the message
says how to know. Of the rows, only the shared items' (sampled as rollout.compare samples them)
and the columns compared are read: the versions' (item, day) keys first, then those rows.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from conf.settings import MonitorSettings
from lake import delta_io
from rollout.compare import compare_embeddings, compare_labels, item_days, sample_keys
from signals.contracts import ITEM_DAY

MODEL, CORPUS, UNKNOWN = "model", "corpus", "unknown"
COMPARED_COLUMNS = {"embedding": [*ITEM_DAY, "status", "vector"],  # what rollout.compare reads of each kind's rows
                    "label": [*ITEM_DAY, "status", "label", "score", "decision", "threshold"]}


@dataclass(frozen=True)
class Attribution:
    """What a drift of one signal's day is put down to, and why."""

    cause: str
    message: str


def model_differs(kind: str, metrics: dict, settings: MonitorSettings) -> bool:
    """Whether two versions' comparison on the same items (rollout.compare metrics) shows a
    different model: a label's scores moved (PSI) or the embeddings' neighbourhoods did."""
    if kind == "embedding":
        overlap = metrics.get("nn_overlap_mean")
        return metrics.get("dim_a") != metrics.get("dim_b") or (overlap is not None and overlap < settings.min_neighbour_overlap)
    return (metrics.get("psi_max") or 0.0) > settings.max_psi


def conclusive(kind: str, metrics: dict, settings: MonitorSettings) -> bool:
    """Whether a comparison compared enough items to say anything: embeddings of different widths,
    or at least `min_rows` items ok in both (a handful of items' neighbourhoods overlap by construction)."""
    if kind == "embedding":
        widths_differ = metrics.get("dim_a") != metrics.get("dim_b")
        return widths_differ or (metrics.get("nn_overlap_mean") is not None and metrics["items_ok_both"] >= settings.min_rows)
    return metrics.get("psi_max") is not None and metrics["items_compared"] >= settings.min_rows


def attribute(table_root: str, kind: str, signal: str, reference_versions: Sequence[str], version: str, days: Sequence[str],
              settings: MonitorSettings) -> Attribution:
    """The cause of a drift of `signal` at `version` against a reference at `reference_versions`,
    from the rows of both on the same items over `days` (the window and the day judged)."""
    if list(reference_versions) == [version]:
        return Attribution(CORPUS, f"the same model version {version} as the reference")
    if not DeltaTable.is_deltatable(table_root):
        return Attribution(UNKNOWN, f"no table at {table_root}")
    found = []
    new_keys = _keys(table_root, signal, version, days)
    for old in reference_versions:
        shared = _keys(table_root, signal, old, days) & new_keys
        if not shared:
            continue
        chosen = sorted({item for item, _ in sample_keys(shared)})  # the items rollout.compare would compare: only their rows are read
        a, b = (_rows(table_root, signal, v, days, chosen, COMPARED_COLUMNS[kind]) for v in (old, version))
        metrics = compare_embeddings(a, b) if kind == "embedding" else compare_labels(a, b)
        if not conclusive(kind, metrics, settings):
            continue
        differs = model_differs(kind, metrics, settings)
        found.append(differs)
        what = (f"neighbour overlap {metrics.get('nn_overlap_mean')}" if kind == "embedding" else f"largest score PSI {metrics.get('psi_max')}")
        if differs:
            return Attribution(MODEL, f"versions {old} and {version} differ on the same {len(shared)} items ({what})")
    if found:
        return Attribution(CORPUS, f"versions {','.join(reference_versions)} and {version} agree on the items both computed")
    return Attribution(UNKNOWN, f"the model version changed ({','.join(reference_versions)} -> {version}) and fewer than "
                                f"{settings.min_rows} items have ok rows of both: "
                                "compute the new version beside the old (backfill --challenger) to tell the model's drift from the corpus's")


def _where(signal: str, version: str, days: Sequence[str]) -> delta_io.Where:
    return [("signal", "=", signal), ("model_version", "=", version), ("ds", "in", list(days))]


def _keys(table_root: str, signal: str, version: str, days: Sequence[str]) -> set[tuple[str, str]]:
    """The (item, day) keys a version has rows of over `days`, from those columns alone."""
    return set(item_days(delta_io.read_arrow(table_root, columns=list(ITEM_DAY), where=_where(signal, version, days))))


def _rows(table_root: str, signal: str, version: str, days: Sequence[str], ids: list[str], columns: list[str]) -> pa.Table:
    """A version's rows of `ids` over `days`, only the `columns` compared: a window of vectors is never read whole."""
    return delta_io.read_arrow(table_root, columns=columns, where=_where(signal, version, days), filters=pc.field("content_id").isin(ids))
