"""Per-stage busy time inside Spark's Python workers, from signals.profiling.StageTimes.

With CONTENT_SIGNALS_PROFILE_DIR set before the Spark session starts, every worker process
writes its cumulative stage totals to `<dir>/<pid>.json`; the difference of two snapshots of
the folder is what the workers did in between.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

Snapshot = dict[str, dict[str, dict[str, float]]]  # pid file -> {"seconds": {...}, "items": {...}}


def snapshot(folder: str | Path) -> Snapshot:
    out: Snapshot = {}
    for path in Path(folder).glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced right now: the next snapshot has it
        out[path.name] = {"seconds": data.get("seconds", {}), "items": data.get("items", {})}
    return out


def difference(before: Snapshot, after: Snapshot) -> dict[str, dict[str, float]]:
    """Seconds and items per stage added between two snapshots, summed over the workers."""
    seconds: dict[str, float] = {}
    items: dict[str, float] = {}
    for name, data in after.items():
        old = before.get(name, {"seconds": {}, "items": {}})
        for stage, value in data["seconds"].items():
            seconds[stage] = seconds.get(stage, 0.0) + value - old["seconds"].get(stage, 0.0)
        for stage, value in data["items"].items():
            items[stage] = items.get(stage, 0) + value - old["items"].get(stage, 0)
    return {"seconds": {k: round(v, 3) for k, v in sorted(seconds.items())}, "items": dict(sorted(items.items()))}


def enable(folder: str | Path) -> None:
    """Turn the stage clocks on for this process and the Spark workers it will start."""
    from signals.profiling import PROFILE_DIR_ENV

    Path(folder).mkdir(parents=True, exist_ok=True)
    os.environ[PROFILE_DIR_ENV] = str(folder)
