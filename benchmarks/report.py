"""The benchmark's JSON summary and its printed table."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

ARMS = ("raw", "predict_batch_udf", "ours")
TARGETS = {"ratio_vs_raw": 0.90, "ratio_vs_pbu": 1.0, "rss_growth": 0.10, "refresh_ratio": 0.10, "uri_vs_inline": 0.90, "uri_rss_growth": 0.10,
           "compute_once_saving": 0.25, "monitor_ratio": 0.05, "year_growth": 0.20,
           "scale_items_per_s": 0.15, "scale_pairs_per_item": 0.15, "video_s_per_cpu_s": 20.0}
URI_WAYS = ("http", "s3")  # benchmarks.uri's ways by URI, each compared with "inline"
STAGES = ("read", "decode", "preprocess", "forward", "write")


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def summarise(results: dict[str, dict[str, Any]], refresh: dict[str, Any] | None) -> dict[str, Any]:
    """The report: per signal the headline numbers first, the details of every arm after."""
    signals: dict[str, Any] = {}
    for name, r in results.items():
        speed = {arm: r["arms"][arm]["items_per_s"] for arm in ARMS}
        rss_1x = r["arms"]["ours"].get("worker_rss", {}).get("peak_worker_mb")
        rss_big = r["ours_scaled"].get("worker_rss", {}).get("peak_worker_mb")
        scale = f"{round(r['ours_scaled']['items'] / r['items'])}x"
        vs_raw, vs_pbu = _ratio(speed["ours"], speed["raw"]), _ratio(speed["ours"], speed["predict_batch_udf"])
        growth = _ratio(rss_big, rss_1x) if rss_1x and rss_big else None
        signals[name] = {
            "items_per_s": speed,
            "ratio_vs_raw": vs_raw,
            "ratio_vs_pbu": vs_pbu,
            "peak_worker_rss_mb": {"1x": rss_1x, scale: rss_big},
            "targets_met": {
                "ours >= 0.90 x raw": vs_raw is not None and vs_raw >= TARGETS["ratio_vs_raw"],
                "ours >= 1.0 x predict_batch_udf": vs_pbu is not None and vs_pbu >= TARGETS["ratio_vs_pbu"],
                f"peak worker rss at {scale} within 10% of 1x": growth is not None and growth <= 1 + TARGETS["rss_growth"],
            },
            "items": r["items"],
            "batch_size": r["batch_size"],
            "arms": r["arms"],
            "ours_scaled": r["ours_scaled"],
            "checks": r["checks"],
            "warm_up_s": r["warm_up_s"],
            "load_avg_1m": r["load_avg_1m"],
        }
    report: dict[str, Any] = {"signals": signals}
    if refresh is not None:
        report["refresh"] = {k: v for k, v in refresh.items() if k != "monitor"} | {"target_met": refresh["ratio"] <= TARGETS["refresh_ratio"]}
        if "monitor" in refresh:
            monitor = refresh["monitor"]
            report["monitor"] = {**monitor, "backfill_s": refresh["backfill_s"], "target_met": monitor["ratio"] <= TARGETS["monitor_ratio"]}
    return report


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _stage_cells(arm: dict[str, Any]) -> list[str]:
    s = arm.get("stages_s", {})
    if "compute" in s or "prepare" in s:  # a Spark arm: worker busy time; "read" is time waiting for input
        write = arm.get("driver_phases_s", {}).get("delta_commit_s")
        return [_fmt(s.get("read")), _fmt(s.get("decode")), _fmt(s.get("preprocess")), _fmt(s.get("forward")),
                "-" if write is None else f"{write:.1f}c"]
    return [_fmt(s.get(stage)) for stage in STAGES]


def _loads(arm: dict[str, Any]) -> str:
    """Models loaded inside the arm's timing (Python workers that had none yet); "-" for raw."""
    if "worker_items" not in arm:
        return "-"
    return str(arm["worker_items"].get("model_load", 0))


def _share(arm: dict[str, Any]) -> str:
    share = arm.get("cpu", {}).get("others_share_of_machine")
    return "-" if share is None else f"{100 * share:.0f}%"


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table: items/s per arm, ratios, per-stage seconds, peak worker memory."""
    header = ["signal", "arm", "items", "wall s", "items/s", "vs raw", "vs pbu", *[f"{s} s" for s in STAGES], "model loads", "peak worker MB", "others' cpu"]
    rows: list[list[str]] = []
    for name, sig in report["signals"].items():
        raw_speed = sig["items_per_s"]["raw"]
        pbu_speed = sig["items_per_s"]["predict_batch_udf"]
        for arm in ARMS:
            a = sig["arms"][arm]
            rss = a.get("worker_rss", {}).get("peak_worker_mb")
            rows.append([name if arm == "raw" else "", arm, str(a["items"]), _fmt(a["wall_s"]), _fmt(a["items_per_s"]),
                         _fmt(_ratio(a["items_per_s"], raw_speed), 2), _fmt(_ratio(a["items_per_s"], pbu_speed), 2),
                         *_stage_cells(a), _loads(a), _fmt(rss, 0), _share(a)])
        big = sig["ours_scaled"]
        rows.append(["", f"ours {big['items'] // sig['items']}x", str(big["items"]), _fmt(big["wall_s"]), _fmt(big["items_per_s"]),
                     "", "", *_stage_cells(big), _loads(big), _fmt(big.get("worker_rss", {}).get("peak_worker_mb"), 0), _share(big)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    out = [line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]]
    out.append("")
    out.append("raw: one process, sequential stages (they add up to its wall time). Spark arms: busy seconds inside the")
    out.append("Python workers summed over tasks (concurrent tasks overlap; GPU workers also prefetch); read = waiting for input batches; 'c' = Delta commit")
    out.append("on the driver (ours writes its files inside the Spark job; predict_batch_udf's parquet write is inside its wall).")
    out.append("model loads: Python workers that loaded the model during the arm (after the warm-up). others' cpu: share of")
    out.append("the machine's cores used by other processes during the arm (contention; 0% = quiet).")
    for name, sig in report["signals"].items():
        met = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in sig["targets_met"].items())
        out.append(f"{name}: ours/raw {_fmt(sig['ratio_vs_raw'], 2)}, ours/pbu {_fmt(sig['ratio_vs_pbu'], 2)}, "
                   f"peak worker MB {sig['peak_worker_rss_mb']} -- {met}")
    if "refresh" in report:
        r = report["refresh"]
        out.append(f"refresh: backfill {r['items']} items x {len(r['signals'])} signals {r['backfill_s']:.1f}s, refresh after "
                   f"+{r['new_items']} items (1%) {r['refresh_1pct_s']:.1f}s, ratio {r['ratio']:.3f} "
                   f"(target <= 0.10: {'yes' if r['target_met'] else 'NO'}); the first refresh after the backfill "
                   f"(whole corpus compared) {r['first_refresh_1pct_s']:.1f}s, ratio {r['first_ratio']:.3f}")
    if "monitor" in report:
        m = report["monitor"]
        out.append(f"monitor of that backfill: {m['monitor_s']:.1f}s, its dashboard drawn and logged {m['publish_s']:.1f}s, with its "
                   f"statistics kept by the backfill {m['cost_s']:.1f}s, ratio {m['ratio']:.3f} "
                   f"(target <= {TARGETS['monitor_ratio']:.2f}: {'yes' if m['target_met'] else 'NO'})")
    if "gpu" in report:
        out.append(gpu_line(report["gpu"]))
    if "uri" in report:
        out.append(uri_line(report["uri"]))
    if "index" in report:
        out.append(index_line(report["index"]))
    if "year" in report and "error" not in report["year"]:
        out.append(year_line(report["year"]))
    return "\n".join(out)


GPU_TARGET = 3000  # ViT-B-32 images/s end to end from JPEG bytes on one H100 (clip-retrieval: 2,500 on an A100)


def gpu_line(gpu: dict[str, Any]) -> str:
    """One line for benchmarks.gpu's report: images/s of each path, and the target where it applies (an H100)."""
    if "error" in gpu:
        return f"GPU path: {gpu['error']}"
    name = gpu.get("machine", {}).get("gpu") or "no GPU"
    speeds = {k: gpu[k]["images_per_s"] for k in ("gpu_decode", "cpu_decode", "ceiling_forward_only") if "images_per_s" in gpu.get(k, {})}
    line = f"GPU path ({name}, ViT-B-32 from JPEG bytes), images/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in speeds.items())
    if "H100" in name and "gpu_decode" in speeds:
        line += f" (target >= {GPU_TARGET:,} on an H100: {'yes' if speeds['gpu_decode'] >= GPU_TARGET else 'NO'})"
    shared = {n: run["images_per_s"] for n, run in gpu.get("workers", {}).items() if "images_per_s" in run}
    if shared:
        line += "; gpu_decode in N workers sharing it: " + ", ".join(f"{n}: {v:,.0f}" for n, v in shared.items())
    return line


def summarise_uri(rounds: dict[str, list[dict[str, Any]]], memory: dict[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """benchmarks.uri's report: items/s of each way (its fastest round), each way by URI against
    inline with its target, and the peak worker RSS of the arms by URI at the two corpus sizes
    of `memory` (items -> way -> arm), the larger against the smaller with the flatness target."""
    best = {way: max(runs, key=lambda a: a["items_per_s"]) for way, runs in rounds.items()}
    speed = {way: a["items_per_s"] for way, a in best.items()}
    ratios = {way: _ratio(speed[way], speed["inline"]) for way in URI_WAYS}
    small, large = sorted(memory)
    peaks = {n: max((a.get("worker_rss") or {}).get("peak_worker_mb") or 0.0 for a in memory[n].values()) for n in (small, large)}
    growth = _ratio(peaks[large], peaks[small])
    met = {f"{way} >= {TARGETS['uri_vs_inline']:.2f} x inline": ratios[way] is not None and ratios[way] >= TARGETS["uri_vs_inline"]
           for way in URI_WAYS}
    met[f"peak worker rss at {large} items within {TARGETS['uri_rss_growth']:.0%} of {small}"] = growth is not None and growth <= 1 + TARGETS["uri_rss_growth"]
    return {
        "items_per_s": speed,
        "ratio_vs_inline": ratios,
        "rounds_items_per_s": {way: [a["items_per_s"] for a in runs] for way, runs in rounds.items()},
        "cpu_ms_per_item": {way: _cpu_per_item(runs) for way, runs in rounds.items()},
        "peak_worker_rss_mb": {str(small): peaks[small], str(large): peaks[large]},
        "rss_growth": growth,
        "targets_met": met,
        "arms": best,
        "memory": {str(n): arms for n, arms in memory.items()},
    }


def _cpu_per_item(runs: list[dict[str, Any]]) -> dict[str, float]:
    """CPU milliseconds per item, the median of the rounds: of the whole benchmark (driver, JVM,
    workers, servers), and of its driver process alone (the loopback servers, and the driver's
    own small share). Contention stretches wall time far more than it changes these."""
    def median(key: str) -> float:
        return round(statistics.median(1000 * a["cpu"][key] / a["items"] for a in runs), 1)

    return {"benchmark": median("cpu_s_this_benchmark"), "driver_process": median("cpu_s_driver_process")}


def uri_line(uri: dict[str, Any]) -> str:
    """One line for benchmarks.uri's report: items/s of each way, the ratios, the memory, the verdicts."""
    if "error" in uri:
        return f"images by URI: {uri['error']}"
    speed, ratios = uri["items_per_s"], uri["ratio_vs_inline"]
    ways = ", ".join(f"{way} {_fmt(speed[way])} ({_fmt(ratios[way], 2)}x)" for way in URI_WAYS)
    rss = ", ".join(f"{n} items {_fmt(mb, 0)}" for n, mb in uri["peak_worker_rss_mb"].items())
    met = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in uri["targets_met"].items())
    cpu = ", ".join(f"{way} {_fmt(c['benchmark'])} ({_fmt(c['driver_process'])} in the driver)" for way, c in uri["cpu_ms_per_item"].items())
    return (f"images by URI, items/s: inline {_fmt(speed['inline'])}, {ways}; CPU ms per item: {cpu}; "
            f"peak worker MB by URI: {rss} -- {met}")
def compute_once_line(report: dict[str, Any]) -> str:
    """One line for the compute-once step: the backfill's seconds both ways, the time saved and the target."""
    s, largest = report["backfill_s"], report["largest_vector_difference"]
    differences = "" if report["identical_tables"] else f", {report.get('table_differences')}"
    return (f"compute once: backfill of {report['items']} items, {report['repin_fraction']:.0%} repins: {s['once']:.1f}s vs "
            f"{s['every']:.1f}s computing every item, {report['time_saved']:.1%} less (target >= "
            f"{TARGETS['compute_once_saving']:.0%}: {'yes' if report['target_met'] else 'NO'}); identical tables: "
            f"{'yes' if report['identical_tables'] else 'NO'} (largest vector difference {'-' if largest is None else f'{largest:.1e}'}{differences})")


def summarise_scale(rows: list[dict[str, Any]], signals: int, photos: dict[str, Any]) -> dict[str, Any]:
    """The scale step's report: per size its items per second (backfill and dedup; the refresh's
    new items per second) and dedup's compared pairs per item, and the targets: the largest
    size's backfill items/s and pairs per item within 15% of the smallest's; `photos`: the folder
    the corpora were cut from besides the wheels' photos, and how many photos in all."""
    per_level = [{**row, "backfill_items_per_s": round(row["items"] / row["backfill_s"], 2),
                  "dedup_items_per_s": round(row["items"] / row["dedup_s"], 2),
                  "dedup_pairs_per_item": round(row["dedup_pairs"] / row["items"], 3),
                  "corpus_items_per_s": round(row["items"] / row["corpus_written_s"], 1) if row["corpus_written_s"] else None}
                 for row in rows]
    small, large = per_level[0], per_level[-1]
    speed = _ratio(large["backfill_items_per_s"], small["backfill_items_per_s"])
    pairs = _ratio(large["dedup_pairs_per_item"], small["dedup_pairs_per_item"])
    return {"signals": signals, "photos": photos, "levels": per_level, "largest_over_smallest": {"backfill_items_per_s": speed, "dedup_pairs_per_item": pairs,
            "dedup_items_per_s": _ratio(large["dedup_items_per_s"], small["dedup_items_per_s"])},
            "targets_met": {"backfill items/s flat": speed is not None and speed >= 1 - TARGETS["scale_items_per_s"],
                            "dedup pairs per item flat": pairs is not None and pairs <= 1 + TARGETS["scale_pairs_per_item"]}}


def scale_line(report: dict[str, Any]) -> str:
    """One line for the scale step: per size the items per second and pairs per item, and the targets."""
    sizes = "; ".join(f"{r['level']}x ({r['items']}): backfill {_fmt(r['backfill_items_per_s'])}/s, refresh {_fmt(r['refresh_1pct_s'])}s, "
                      f"dedup {_fmt(r['dedup_items_per_s'])}/s, {_fmt(r['dedup_pairs_per_item'], 2)} pairs/item" for r in report["levels"])
    met = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in report["targets_met"].items())
    photos = report["photos"]
    source = f"the wheels' and {photos['folder']}" if photos["folder"] else "the wheels'"
    return f"scale, corpora cut from {photos['photos']} photos ({source}): {sizes} -- {met}"


def year_line(report: dict[str, Any]) -> str:
    """One line for benchmarks.year's report: per arm, the last day's refresh and read figures over day 30's, the target."""
    days, parts = report["days"], []
    for arm, r in report["arms"].items():
        ratios = ", ".join(f"{name} {_fmt(v, 2)}x" for name, v in r[f"day_{days}_over_day_30"].items())
        shape = r["last_day_tables"].get("embeddings", {})
        parts.append(f"{arm}: day {days} over day 30: {ratios}; embeddings on day {days}: {shape.get('commits_since_checkpoint')} commits "
                     f"since a checkpoint, {shape.get('log_files')} log files, {shape.get('data_files')} data files, at most "
                     f"{shape.get('most_files_in_a_partition')} in a partition")
    met = report.get("target_met")
    verdict = "" if met is None else f" -- within +{TARGETS['year_growth']:.0%} with upkeep: {'yes' if met else 'NO'}"
    return f"year of {days} daily refreshes: " + "; ".join(parts) + verdict


def index_line(report: dict[str, Any]) -> str:
    """One line for benchmarks.index's report: recall@10 and query cost against exact search, and the targets."""
    met = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in report["targets_met"].items())
    return (f"index: {report['items']} x {report['dim']} vectors, {report['index_kind']}: recall@10 {report['recall_at_10']:.3f}, "
            f"{report['ms_per_query']['index']:.3f} ms/query vs exact {report['ms_per_query']['exact']:.3f} "
            f"({report['query_cost_ratio']:.1f}x) -- {met}")


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write a benchmark's report as JSON at `path`, its folder made if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
