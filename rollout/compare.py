"""Champion against challenger: how two model versions of a signal differ on the same items.

Before a challenger is promoted its owners need to see what would change for consumers: score
distributions (PSI, KS), label decisions, embedding neighbourhoods (nearest-neighbour overlap),
error rates and throughput. Everything here works on Arrow tables of the signal's rows at two
model versions (numpy, faiss and scipy; no Spark), compares only the items both versions have
(the differences say which version lacks how many of the others: a canary lacks most), and caps
the items compared with a sample chosen by a hash of `content_id`, so that the same items are
compared in every run. Rows are lined up by item and day (`signals.contracts.ITEM_DAY`, as
rollout.coverage judges them): an item with rows on two days counts once per day. Two identical
versions show no differences at all.

    comparison = build_comparison("image_embedding", champion_rows, challenger_rows, ledger=runs)
    write_report([comparison], Path("reports/compare.html"), "image_embedding 1 vs 2")
"""
from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rollout.html_report import figure_png, format_value, html_page, html_table, image_tag
from signals.contracts import ITEM_DAY, lakehouse_table

EXPERIMENT = "content-signals-compare"
MAX_ITEMS = 20_000
MAX_QUERIES = 2_000  # items whose neighbourhoods are compared (a standard error of about 0.005 on the mean)
PSI_BINS = 10
PSI_FLOOR = 1e-4  # share given to an empty bin so that PSI stays finite
MAX_LABEL_PLOTS = 24
_EPS = 1e-6


# -- sampling and alignment -------------------------------------------------------------------

def _hash64(content_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(content_id.encode(), digest_size=8).digest(), "big")


def sample_keys(keys: set[tuple[str, str]], max_items: int = MAX_ITEMS) -> list[tuple[str, str]]:
    """At most `max_items` (item, day) keys, those of the items with the smallest hash (an item's
    days together): the same items in every run."""
    if len(keys) <= max_items:
        return sorted(keys)
    return sorted(sorted(keys, key=lambda key: (_hash64(key[0]), key))[:max_items])


def item_days(table: pa.Table) -> list[tuple[str, str]]:
    """Each row's (item, day) key (`signals.contracts.ITEM_DAY`), in the table's order."""
    return list(zip(*(table[c].to_pylist() for c in ITEM_DAY)))


def _keys(table: pa.Table) -> set[tuple[str, str]]:
    return set(item_days(table.select(list(ITEM_DAY)).group_by(list(ITEM_DAY), use_threads=False).aggregate([])))


def _matches(table: pa.Table, keys: Sequence[tuple[str, str]]) -> pa.Table:
    """Each row of `table` whose key is one of `keys`: its row number ("row") and its key's place in `keys` ("at")."""
    wanted = pa.table([pa.array([key[i] for key in keys], pa.string()) for i in range(len(ITEM_DAY))] + [pa.array(range(len(keys)), pa.int64())],
                      names=[*ITEM_DAY, "at"])
    rows = table.select(list(ITEM_DAY)).append_column("row", pa.array(range(table.num_rows), pa.int64()))
    return rows.join(wanted, list(ITEM_DAY), join_type="inner", use_threads=False).select(["row", "at"])


def _aligned(table: pa.Table, keys: Sequence[tuple[str, str]]) -> pa.Table:
    """The first row of each of `keys`, in that order (every key must be present)."""
    first = _matches(table, keys).group_by("at", use_threads=False).aggregate([("row", "min")]).sort_by("at")
    return table.take(first["row_min"])


def _of(table: pa.Table, keys: Sequence[tuple[str, str]]) -> pa.Table:
    """The rows of `table` whose key is one of `keys`, in the table's order."""
    return table.take(np.sort(_matches(table, keys)["row"].to_numpy()))


def _versions(table: pa.Table) -> str:
    return ",".join(sorted(str(v) for v in pc.unique(table["model_version"]).to_pylist())) if "model_version" in table.column_names else "?"


# -- embeddings -------------------------------------------------------------------------------

def _matrix(vectors: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Rows of equal-length vectors as an (n, d) float32 matrix, L2-normalised."""
    if isinstance(vectors, pa.ChunkedArray):
        vectors = vectors.combine_chunks()
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    m = flat.reshape(n, -1)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def _neighbours(x: np.ndarray, k: int, queries: np.ndarray) -> np.ndarray:
    """The k nearest other rows of x of each query row, by inner product (faiss IndexFlatIP: exact)."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x))
    _, found = index.search(np.ascontiguousarray(x[queries]), k + 1)
    out = np.empty((len(queries), k), dtype=np.int64)
    for i, (query, row) in enumerate(zip(queries, found)):
        out[i] = row[row != query][:k]  # drop itself (or, tied with a duplicate, the k+1-th)
    return out


def compare_embeddings(a: pa.Table, b: pa.Table, k: int = 10, max_items: int = MAX_ITEMS,
                       max_queries: int = MAX_QUERIES) -> dict[str, Any]:
    """Embedding rows of one signal at two model versions, on the items both have.

    Scalars: item counts, error rates, status agreement, nearest-neighbour overlap@k (share of an
    item's k nearest neighbours among the items ok in both that are the same in a's and b's
    space; exact search costs queries x items x dim, so it is measured for at most `max_queries`
    items, chosen by hash, against all of them), and where the dimensions match the cosine
    between an item's two vectors. Per-item values for plots are under "distributions"."""
    ids_a, ids_b = _keys(a), _keys(b)
    shared = ids_a & ids_b
    chosen = sample_keys(shared, max_items)
    ta, tb = _aligned(a, chosen), _aligned(b, chosen)
    n = len(chosen)
    ok_a = pc.fill_null(pc.and_(pc.equal(ta["status"], "ok"), pc.is_valid(ta["vector"])), False).to_numpy(zero_copy_only=False)
    ok_b = pc.fill_null(pc.and_(pc.equal(tb["status"], "ok"), pc.is_valid(tb["vector"])), False).to_numpy(zero_copy_only=False)
    both = np.flatnonzero(ok_a & ok_b) if n else np.zeros(0, dtype=np.int64)
    metrics: dict[str, Any] = {
        "rows_a": a.num_rows, "rows_b": b.num_rows, "items_shared": len(shared), "items_compared": n,
        "only_in_a": len(ids_a - shared), "only_in_b": len(ids_b - shared),
        "error_rate_a": _rate(~ok_a), "error_rate_b": _rate(~ok_b),
        "status_agreement": _rate(ok_a == ok_b),
        "input_hash_agreement": _rate(pc.fill_null(pc.equal(ta["input_hash"], tb["input_hash"]), True).to_numpy(zero_copy_only=False))
        if "input_hash" in ta.column_names and n else None,
        "items_ok_both": int(len(both)), "k": k,
    }
    distributions: dict[str, np.ndarray] = {}
    xa = _matrix(ta["vector"].take(pa.array(both))) if len(both) else np.zeros((0, 0), np.float32)
    xb = _matrix(tb["vector"].take(pa.array(both))) if len(both) else np.zeros((0, 0), np.float32)
    metrics["dim_a"] = int(xa.shape[1]) if len(both) else None
    metrics["dim_b"] = int(xb.shape[1]) if len(both) else None
    k_eff = min(k, len(both) - 1)
    if k_eff >= 1:
        ok_ids = [chosen[i][0] for i in both]
        queries = np.sort(np.argsort([_hash64(i) for i in ok_ids], kind="stable")[:max_queries])
        na, nb = _neighbours(xa, k_eff, queries), _neighbours(xb, k_eff, queries)
        overlap = (na[:, :, None] == nb[:, None, :]).any(axis=2).sum(axis=1) / k_eff
        distributions["nn_overlap"] = overlap
        metrics.update(k_effective=k_eff, nn_queries=len(queries), nn_overlap_mean=float(overlap.mean()), nn_overlap_median=float(np.median(overlap)),
                       nn_overlap_min=float(overlap.min()))
    else:
        metrics.update(k_effective=0, nn_queries=0, nn_overlap_mean=None, nn_overlap_median=None, nn_overlap_min=None)
    if len(both) and xa.shape[1] == xb.shape[1]:
        bits_a, bits_b = _raw(ta, both), _raw(tb, both)
        identical = (bits_a == bits_b).all(axis=1)  # bit for bit, as stored
        ra, rb = (bits.view(np.float32).astype(np.float64) for bits in (bits_a, bits_b))  # float64: identical gives ~1.0
        ra /= np.maximum(np.linalg.norm(ra, axis=1, keepdims=True), 1e-300)
        rb /= np.maximum(np.linalg.norm(rb, axis=1, keepdims=True), 1e-300)
        cosine = np.clip((ra * rb).sum(axis=1), -1.0, 1.0)
        distributions["cosine"] = cosine
        metrics.update(cosine_mean=float(cosine.mean()), cosine_min=float(cosine.min()),
                       cosine_p05=float(np.quantile(cosine, 0.05)), identical_vectors=_rate(identical))
    else:
        metrics.update(cosine_mean=None, cosine_min=None, cosine_p05=None, identical_vectors=None)
    metrics["distributions"] = distributions
    return metrics


def _raw(table: pa.Table, rows: np.ndarray) -> np.ndarray:
    """The selected rows' vectors as stored, bit patterns as uint32 (so NaN == NaN, -0.0 != 0.0)."""
    vectors = table["vector"].take(pa.array(rows))
    if isinstance(vectors, pa.ChunkedArray):
        vectors = vectors.combine_chunks()
    flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.view(np.uint32).reshape(len(rows), -1)


def _rate(mask: np.ndarray) -> float | None:
    return float(np.mean(mask)) if len(mask) else None


# -- labels -----------------------------------------------------------------------------------

def psi(a: np.ndarray, b: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of b against a, on equal-width bins over [0, 1] (widened to the data)."""
    lo = min(0.0, float(np.min(a)), float(np.min(b)))
    hi = max(1.0, float(np.max(a)), float(np.max(b)))
    edges = np.linspace(lo, hi, bins + 1)
    return psi_of_counts(np.histogram(a, edges)[0], np.histogram(b, edges)[0])


def psi_of_counts(a: np.ndarray, b: np.ndarray) -> float:
    """Population stability index of histogram b against histogram a (counts on the same bins)."""
    p = np.maximum(np.asarray(a, np.float64) / max(np.sum(a), 1), PSI_FLOOR)
    q = np.maximum(np.asarray(b, np.float64) / max(np.sum(b), 1), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def compare_labels(a: pa.Table, b: pa.Table, max_items: int = MAX_ITEMS) -> dict[str, Any]:
    """Label rows of one signal at two model versions, on the items both have.

    Per label ("labels"): pairs compared, decision agreement, score PSI and KS statistic, mean
    score and positive rate a/b; overall: error rates, status agreement, pooled decision
    agreement, worst PSI and KS. Score arrays for plots are under "distributions"."""
    from scipy.stats import ks_2samp

    ids_a, ids_b = _keys(a), _keys(b)
    shared = ids_a & ids_b
    chosen = sample_keys(shared, max_items)
    ta, tb = _of(a, chosen), _of(b, chosen)
    err_a, err_b = _errored(ta, chosen), _errored(tb, chosen)
    fine = [key for key, bad in zip(chosen, err_a | err_b) if not bad]
    ok_a, ok_b = _ok_labels(ta, fine), _ok_labels(tb, fine)  # items ok in both: label sets compared
    pairs = ok_a.join(ok_b, keys=[*ITEM_DAY, "label"], join_type="inner", left_suffix="_a", right_suffix="_b")
    per_label: dict[str, dict[str, Any]] = {}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    agree_total = decided_total = 0
    for label in sorted(set(ok_a["label"].to_pylist()) | set(ok_b["label"].to_pylist())):
        rows = pairs.filter(pc.equal(pairs["label"], label))
        sa = rows["score_a"].to_numpy(zero_copy_only=False).astype(np.float64)
        sb = rows["score_b"].to_numpy(zero_copy_only=False).astype(np.float64)
        da, db = rows["decision_a"].to_pylist(), rows["decision_b"].to_pylist()
        decided = [(x, y) for x, y in zip(da, db) if x is not None and y is not None]
        agree = sum(x == y for x, y in decided)
        agree_total, decided_total = agree_total + agree, decided_total + len(decided)
        ks = ks_2samp(sa, sb) if len(sa) else None
        per_label[label] = {
            "pairs": rows.num_rows,
            "unmatched_a": int(pc.sum(pc.equal(ok_a["label"], label)).as_py() or 0) - rows.num_rows,
            "unmatched_b": int(pc.sum(pc.equal(ok_b["label"], label)).as_py() or 0) - rows.num_rows,
            "decision_agreement": agree / len(decided) if decided else None,
            "positive_rate_a": _mean([x for x, _ in decided]), "positive_rate_b": _mean([y for _, y in decided]),
            "mean_score_a": float(sa.mean()) if len(sa) else None, "mean_score_b": float(sb.mean()) if len(sb) else None,
            "mean_abs_score_diff": float(np.abs(sa - sb).mean()) if len(sa) else None,
            "psi": psi(sa, sb) if len(sa) else None,
            "ks": float(ks.statistic) if ks is not None else None,
            "ks_pvalue": float(ks.pvalue) if ks is not None else None,
            "threshold_a": _mean(rows["threshold_a"].to_pylist()), "threshold_b": _mean(rows["threshold_b"].to_pylist()),
        }
        scores[label] = (sa, sb)
    psis = [m["psi"] for m in per_label.values() if m["psi"] is not None]
    kss = [m["ks"] for m in per_label.values() if m["ks"] is not None]
    return {
        "rows_a": a.num_rows, "rows_b": b.num_rows, "items_shared": len(shared), "items_compared": len(chosen),
        "only_in_a": len(ids_a - shared), "only_in_b": len(ids_b - shared),
        "error_rate_a": _rate(err_a), "error_rate_b": _rate(err_b), "status_agreement": _rate(err_a == err_b),
        "labels_compared": len(per_label),
        "decision_agreement": agree_total / decided_total if decided_total else None,
        "psi_max": max(psis) if psis else None, "ks_max": max(kss) if kss else None,
        "labels": per_label,
        "distributions": {"scores": scores},
    }


def _ok_labels(table: pa.Table, keys: Sequence[tuple[str, str]]) -> pa.Table:
    table = _of(table, keys)
    ok = pc.and_(pc.equal(table["status"], "ok"), pc.is_valid(table["label"]))
    return table.filter(pc.fill_null(ok, False)).select([*ITEM_DAY, "label", "score", "decision", "threshold"])


def _errored(table: pa.Table, keys: Sequence[tuple[str, str]]) -> np.ndarray:
    """Per key of `keys`: whether any of its rows is an error."""
    bad = set(item_days(table.filter(pc.fill_null(pc.not_equal(table["status"], "ok"), True))))
    return np.array([key in bad for key in keys], dtype=bool)


def _mean(values: Sequence[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return float(np.mean(present)) if present else None


# -- throughput -------------------------------------------------------------------------------

def throughput(ledger: pa.Table, signal: str, version: str) -> float | None:
    """Rows per second of the succeeded runs of `signal` at `version`: sum(rows_in) / sum(duration_s).

    The ledger times whole runs, so with several signals in one run this is the run's rate."""
    rows = ledger.filter(pc.fill_null(pc.and_(
        pc.and_(pc.equal(ledger["signal"], signal), pc.equal(ledger["model_version"], str(version))),
        pc.and_(pc.equal(ledger["status"], "succeeded"), pc.is_valid(ledger["rows_in"])),
    ), False))
    seconds = pc.sum(rows["duration_s"]).as_py() or 0.0
    return (pc.sum(rows["rows_in"]).as_py() or 0) / seconds if seconds > 0 else None


# -- comparisons, figures, report -------------------------------------------------------------

@dataclass
class Comparison:
    """One signal's champion-versus-challenger metrics (JSON-able) and figures (PNG bytes)."""

    signal: str
    kind: str  # "embedding" or "label"
    version_a: str
    version_b: str
    metrics: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)
    read_versions: dict[str, int] = field(default_factory=dict)  # table -> the Delta version its rows were read at

    @property
    def differences(self) -> list[str]:
        """What differs between the versions, in words; empty for two identical versions."""
        return differences(self.kind, self.metrics, self.version_a, self.version_b)


def differences(kind: str, m: Mapping[str, Any], version_a: str, version_b: str) -> list[str]:
    """Human-readable differences found in a comparison's metrics (none for identical versions)."""
    found = []
    if not m.get("items_compared"):  # nothing measured: every figure below is None alike, which is no likeness
        found.append(f"no item in common to compare ({m.get('only_in_a')} items only in a, {m.get('only_in_b')} only in b)")
    else:  # a partial overlap (a canary): what one version did not score is compared nowhere else
        for lacking, having, missing in ((version_b, version_a, m.get("only_in_a")), (version_a, version_b, m.get("only_in_b"))):
            if missing:
                found.append(f"version {lacking} lacks {missing} items that version {having} has (not compared)")
    if m.get("error_rate_a") != m.get("error_rate_b"):
        found.append(f"error rate {_pct(m.get('error_rate_a'))} -> {_pct(m.get('error_rate_b'))}")
    if m.get("status_agreement") is not None and m["status_agreement"] < 1:
        found.append(f"status agrees on {_pct(m['status_agreement'])} of items")
    if kind == "embedding":
        if m.get("nn_overlap_mean") is not None and m["nn_overlap_mean"] < 1:
            found.append(f"nearest-neighbour overlap@{m.get('k_effective')} mean {format_value(m['nn_overlap_mean'])}")
        if m.get("dim_a") != m.get("dim_b"):
            found.append(f"dimension {m.get('dim_a')} -> {m.get('dim_b')}")
        if m.get("identical_vectors") is not None and m["identical_vectors"] < 1:
            found.append(f"vectors differ on {_pct(1 - m['identical_vectors'])} of items (mean cosine {format_value(m.get('cosine_mean'))})")
    else:
        for label, lm in m.get("labels", {}).items():
            bits = []
            if lm.get("decision_agreement") is not None and lm["decision_agreement"] < 1:
                bits.append(f"decisions agree on {_pct(lm['decision_agreement'])}")
            if lm.get("psi") is not None and lm["psi"] > 1e-12:
                bits.append(f"PSI {format_value(lm['psi'])}")
            if lm.get("ks") is not None and lm["ks"] > 0:
                bits.append(f"KS {format_value(lm['ks'])}")
            if lm.get("unmatched_a") or lm.get("unmatched_b"):
                bits.append(f"scored only by a/b on {lm.get('unmatched_a')}/{lm.get('unmatched_b')} items")
            if lm.get("threshold_a") != lm.get("threshold_b"):
                bits.append(f"threshold {format_value(lm.get('threshold_a'))} -> {format_value(lm.get('threshold_b'))}")
            if bits:
                found.append(f"{label}: " + ", ".join(bits))
    return found


def build_comparison(signal: str, a: pa.Table, b: pa.Table, ledger: pa.Table | None = None,
                     k: int = 10, max_items: int = MAX_ITEMS) -> Comparison:
    """Compare a signal's rows at two versions (embedding rows if they have `vector`, else label rows),
    add throughput from the ledger, and draw the figures."""
    kind = "embedding" if "vector" in a.column_names else "label"
    metrics = compare_embeddings(a, b, k, max_items) if kind == "embedding" else compare_labels(a, b, max_items)
    distributions = metrics.pop("distributions")
    version_a, version_b = _versions(a), _versions(b)
    if ledger is not None:
        metrics["throughput_a"] = throughput(ledger, signal, version_a)
        metrics["throughput_b"] = throughput(ledger, signal, version_b)
    comparison = Comparison(signal, kind, version_a, version_b, metrics)
    comparison.figures = _figures(comparison, distributions)
    return comparison


def pin_tables(root: str, names: Sequence[str] = ("embeddings", "labels")) -> dict[str, int | None]:
    """The Delta version each of `names` and the run ledger has now in the lakehouse at `root` (None where there is no
    such table): what comparisons read at, taken once for every signal one `compare` compares."""
    from lake import delta_io

    return {name: delta_io.latest_version(lakehouse_table(root, name)) for name in [*names, "runs"]}


def compare_in_lakehouse(root: str, signal: str, version_a: str, version_b: str, table: str | None = None,
                         k: int = 10, max_items: int = MAX_ITEMS, pinned: Mapping[str, int | None] | None = None) -> Comparison:
    """Read a signal's rows at two versions from the lakehouse at `root` (`embeddings`, else `labels`) and compare them.
    Each table (and the run ledger) is read once, at the Delta version `pinned` gives it (pin_tables; default: the
    version it had when the comparison began), which the comparison names (`read_versions`): read one after the other
    at their latest, a refresh committing between the reads compared two snapshots (found in review)."""
    from lake import delta_io

    names = [table] if table else ["embeddings", "labels"]
    pinned = pin_tables(root, names) if pinned is None else pinned

    def rows(name: str) -> pa.Table:
        """Both versions' rows, in one read at the pinned version (none where there is no table)."""
        if pinned[name] is None:
            return pa.table({"model_version": pa.array([], pa.string())})
        return delta_io.read_arrow(lakehouse_table(root, name), pinned[name],
                                   where=[("signal", "=", signal), ("model_version", "in", sorted({version_a, version_b}))])

    for name in names:
        both = rows(name)
        a, b = (both.filter(pc.equal(both["model_version"], version)) for version in (version_a, version_b))
        if a.num_rows or b.num_rows or table:
            break
    if not a.num_rows or not b.num_rows:
        raise LookupError(f"{signal}: no rows at version {version_a if not a.num_rows else version_b} in {root}")
    ledger = delta_io.read_arrow(f"{root.rstrip('/')}/runs", pinned["runs"]) if pinned["runs"] is not None else None
    comparison = build_comparison(signal, a, b, ledger, k, max_items)
    comparison.read_versions = {t: pinned[t] for t in (name, "runs") if pinned[t] is not None}
    return comparison


def _figures(c: Comparison, distributions: Mapping[str, Any]) -> dict[str, bytes]:
    """PNG figures, drawn with matplotlib's Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.figure import Figure

    figures: dict[str, bytes] = {}
    a_name, b_name = f"a (v{c.version_a})", f"b (v{c.version_b})"
    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    values = [c.metrics.get("error_rate_a") or 0.0, c.metrics.get("error_rate_b") or 0.0]
    ax.bar([a_name, b_name], values, color=["tab:blue", "tab:orange"])
    ax.set_ylabel("error rate")
    ax.set_title(f"{c.signal}: error rates")
    figures["error rates"] = figure_png(fig)
    if c.kind == "embedding":
        k = max(1, c.metrics.get("k_effective") or 1)
        cosine_low = min(0.9, float(np.min(distributions["cosine"]))) if "cosine" in distributions else 0.0
        for key, title, xlabel, edges in [
            ("nn_overlap", "nearest-neighbour overlap", f"overlap@{k}", (np.arange(k + 2) - 0.5) / k),  # a bin per value
            ("cosine", "cosine of an item's two vectors", "cosine", np.linspace(cosine_low, 1.0 + 1e-9, 21)),
        ]:
            if key in distributions:
                fig = Figure(figsize=(5, 3))
                ax = fig.add_subplot()
                ax.hist(distributions[key], bins=edges, color="tab:green")
                ax.set_xlabel(xlabel)
                ax.set_ylabel("items")
                ax.set_title(f"{c.signal}: {title}")
                figures[title] = figure_png(fig)
    else:
        scores = distributions["scores"]
        shown = sorted(scores, key=lambda label: -(c.metrics["labels"][label]["psi"] or 0))[:MAX_LABEL_PLOTS]
        if shown:
            cols = min(4, len(shown))
            rows = math.ceil(len(shown) / cols)
            fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
            for i, label in enumerate(sorted(shown)):
                ax = fig.add_subplot(rows, cols, i + 1)
                sa, sb = scores[label]
                edges = np.linspace(0.0, 1.0, 21)
                ax.hist(sa, bins=edges, alpha=0.5, label=a_name, color="tab:blue")
                ax.hist(sb, bins=edges, alpha=0.5, label=b_name, color="tab:orange")
                ax.set_title(label, fontsize=9)
                if i == 0:
                    ax.legend(fontsize=7)
            fig.suptitle(f"{c.signal}: score distributions" + (" (labels with the largest PSI)" if len(scores) > len(shown) else ""))
            fig.tight_layout()
            figures["score distributions"] = figure_png(fig)
    return figures


def read_said(read_versions: Mapping[str, int]) -> str:
    """The Delta versions a comparison read its tables at, in words ("embeddings version 3, runs version 2")."""
    return ", ".join(f"{table} version {version}" for table, version in read_versions.items())


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def write_report(comparisons: Sequence[Comparison], path: Path, title: str) -> Path:
    """ONE self-contained HTML file: a summary, then per signal its differences, metrics tables and
    plots (embedded base64 PNG); no external assets, so it can be mailed or logged as an artifact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [html_table([[c.signal, c.kind, c.version_a, c.version_b, c.metrics.get("items_compared"),
                          len(c.differences) or "none"] for c in comparisons],
                        ["signal", "kind", "version a", "version b", "items compared", "differences"])]
    for c in comparisons:
        parts.append(f"<h2 id='{html.escape(c.signal)}'>{html.escape(c.signal)}: version {html.escape(c.version_a)} "
                     f"vs {html.escape(c.version_b)}</h2>")
        if c.read_versions:
            parts.append(f"<p>Read at {html.escape(read_said(c.read_versions))}.</p>")
        found = c.differences
        if found:
            parts.append("<ul class='diff'>" + "".join(f"<li>{html.escape(d)}</li>" for d in found) + "</ul>")
        else:
            parts.append("<p class='same'>No differences between the two versions.</p>")
        scalars = [[k, v] for k, v in c.metrics.items() if not isinstance(v, Mapping)]
        parts.append(html_table(scalars, ["metric", "value"]))
        labels = c.metrics.get("labels") or {}
        if labels:
            columns = list(next(iter(labels.values())))
            parts.append(html_table([[label, *(m.get(col) for col in columns)] for label, m in labels.items()],
                                ["label", *columns]))
        parts += [image_tag(name, png) for name, png in c.figures.items()]
    path.write_text(html_page(title, parts), encoding="utf-8")
    return path


# -- MLflow -----------------------------------------------------------------------------------

def report_metrics(comparisons: Sequence[Comparison]) -> dict[str, Any]:
    """The comparisons' metrics nested by signal, as log_to_mlflow takes them."""
    return {c.signal: c.metrics for c in comparisons}


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics as `a.b.c` -> float, numeric and finite values only, keys made MLflow-safe."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = re.sub(r"[^A-Za-z0-9_\-. /:]", "_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, (bool, int, float, np.integer, np.floating)) and math.isfinite(float(value)):
            flat[name] = float(value)
    return flat


def log_to_mlflow(tracking_uri: str, report: Path | None, metrics: Mapping[str, Any], run_name: str,
                  artifact_location: str | None = None, experiment: str = EXPERIMENT,
                  params: Mapping[str, str] | None = None, artifacts: Sequence[Path] = ()) -> str:
    """An MLflow run in `experiment` (default `content-signals-compare`) with the metrics and the HTML report
    as an artifact (and `params`, other `artifacts`: a training run's lineage and model); returns
    its run id. The experiment, when new (made by whichever of two first runs at once comes first), keeps its artifacts at
    `artifact_location`, else (a local sqlite store) in an `mlartifacts` folder beside the
    database (not ./mlruns under the working directory), else where the tracking server says."""
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    from lake.registry import mlflow_client, sqlite_path  # imports mlflow with its telemetry off

    client = mlflow_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        db = sqlite_path(tracking_uri)
        location = artifact_location or ((db.resolve().parent / "mlartifacts").as_uri() if db is not None else None)
        try:
            experiment_id = client.create_experiment(experiment, artifact_location=location)
        except MlflowException as e:  # created meanwhile by another first run (two first trains at once)
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment_id = client.get_experiment_by_name(experiment).experiment_id
    else:
        experiment_id = found.experiment_id
    run = client.create_run(experiment_id, run_name=run_name)
    run_id = run.info.run_id
    try:
        now = int(run.info.start_time)
        flat = [Metric(k, v, now, 0) for k, v in flatten_metrics(metrics).items()]
        for start in range(0, len(flat), 1000):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(run_id, metrics=flat[start:start + 1000])
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in (params or {}).items()])
        for path in [report, *artifacts] if report is not None else artifacts:
            client.log_artifact(run_id, str(path))
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
