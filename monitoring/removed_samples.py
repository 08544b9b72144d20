"""The sampled vectors of embedding rows a run's commits removed, taken out of the statistics of the
runs that wrote them (`signal_stats.sample`).

A refresh that takes down some of a day's items keeps the backfill's statistics of that day, which
describe the day as it was backfilled (docs/design.md, Monitoring); their sample held the taken-down
items' own vectors, item-level data of content that left the corpus, kept as long as those
statistics are (for good, where no later run replaces the day). Each vector a commit removed and did
not write again (a row copied on write keeps its run, so it is written again) is taken out of the
sample of the statistics row of its run and day, once per removed row: a vector equal to it is
the same vector, whichever item it was sampled for. That is done once per commit, under an app id
of the commit's own: done again (`monitor --recompute`, a retry of the run), it would take a vector
equal to a removed one (a duplicate image's, of an item still there) as well. The run does it right
after its commits; statistics of the earlier run computed in between (a monitor of it racing the
refresh) hold no removed row, and may lose such an equal vector. The rest of the row (counts,
means, quantiles) still describes the rows it was made of.
"""
from __future__ import annotations

import functools
import operator
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from lake import delta_io
from monitoring.file_summary import matrix_column
from signals.contracts import EMBEDDINGS, SIGNAL_STATS, STATUS_OK, lakehouse_table

STATS_KEY = ("signal", "model_version", "ds", "run_id")  # a statistics row: a run's rows of a signal's day at a model version
ROW_KEY = ("content_id", *STATS_KEY)  # an embedding row as its run wrote it


def drop_removed_samples(lakehouse_root: str, run_id: str, job: str, embeddings_commit: int | None,
                         removed: list[delta_io.LiveFile]) -> None:
    """Take the vectors of the embedding rows that the commit `embeddings_commit` (of run `run_id`)
    removed, in the files `removed` (`delta_io.removed_by` of that commit), out of the samples of the
    other runs' statistics that hold them, in one commit of `signal_stats` (none when no sample
    holds one). Nothing is done where this was done for the commit already, or where
    the snapshot before the commit can no longer be read (its log expired: a monitor of a run long past)."""
    stats_root = lakehouse_table(lakehouse_root, SIGNAL_STATS.name)
    table = lakehouse_table(lakehouse_root, EMBEDDINGS.name)
    done_once = f"content-signals/{run_id}/{SIGNAL_STATS.name}/removed-samples-of-{EMBEDDINGS.name}-{embeddings_commit}"
    if embeddings_commit is None or not removed or not DeltaTable.is_deltatable(stats_root) or delta_io.committed(stats_root, done_once):
        return
    kept = delta_io.read_arrow(stats_root, where=[("signal", "in", sorted({f.partition_values["signal"] for f in removed}))],
                               filters=(pc.field("kind") == "embedding") & (pc.field("run_id") != run_id), columns=list(STATS_KEY)).to_pylist()
    sampled = {key for r in kept if _meets(removed, key := tuple(r[k] for k in STATS_KEY))}
    if not sampled:
        return
    runs = sorted({key[-1] for key in sampled})
    of_runs = pc.field("run_id").isin(runs)
    try:
        gone_rows = delta_io.read_files(table, embeddings_commit - 1, _holding(table, embeddings_commit - 1, runs, removed, sampled),
                                        [*ROW_KEY, "status", "vector"]).filter(of_runs & (pc.field("status") == STATUS_OK))
    except DeltaError:
        return
    days = [("signal", "in", sorted({k[0] for k in sampled})), ("ds", "in", sorted({k[2] for k in sampled}))]
    still = delta_io.read_arrow(table, embeddings_commit, where=days, filters=of_runs, columns=list(ROW_KEY))
    written_again = {tuple(r[k] for k in ROW_KEY) for r in still.to_pylist()}  # rows a rewrite kept (copy on write keeps their run)
    gone: dict[tuple, list[bytes]] = defaultdict(list)  # statistics row -> the vectors of its rows gone, as bytes
    for i, row in enumerate(gone_rows.select(list(ROW_KEY)).to_pylist()):
        key = tuple(row[k] for k in STATS_KEY)
        vector = gone_rows["vector"][i].values
        if key in sampled and tuple(row[k] for k in ROW_KEY) not in written_again and vector is not None:
            gone[key].append(np.asarray(vector.to_numpy(zero_copy_only=False), np.float32).tobytes())
    if not gone:
        return
    held = delta_io.read_arrow(stats_root, filters=_rows_of(gone))
    before = [_sample_of(cell) for cell in held["sample"]]
    samples = [_without(sample, gone[tuple(r[k] for k in STATS_KEY)]) for sample, r in zip(before, held.select(list(STATS_KEY)).to_pylist())]
    changed = [i for i, (b, after) in enumerate(zip(before, samples)) if len(b) != len(after)]
    if not changed:
        return
    rows = held.take(changed).select(SIGNAL_STATS.schema.names).cast(SIGNAL_STATS.schema)
    rows = rows.set_column(rows.schema.get_field_index("sample"), SIGNAL_STATS.schema.field("sample"),
                           matrix_column([samples[i] for i in changed], SIGNAL_STATS.schema.field("sample").type))
    keys = {tuple(r[k] for k in STATS_KEY) for r in rows.select(list(STATS_KEY)).to_pylist()}
    delta_io.replace_rows(stats_root, SIGNAL_STATS, rows, run_id, sorted({k[-1] for k in keys}), _rows_of(keys),
                          {"job": job, "removed_samples_of": ",".join(sorted({k[-1] for k in keys}))}, app_id=done_once)


def _meets(files: list[delta_io.LiveFile], key: tuple) -> bool:
    """Whether any of the files may hold rows of the statistics row `key` (its signal, model version and day)."""
    day = delta_io.Slice((key[0], key[1]), (key[2], key[2]))
    return any(s.meets(day) for s in delta_io.slices(EMBEDDINGS, files))


def _holding(table: str, version: int, runs: list[str], files: list[delta_io.LiveFile], sampled: set[tuple]) -> list[delta_io.LiveFile]:
    """Those of `files` (live at `version`) that may hold rows of the statistics rows `sampled`, by
    their partition, days and `run_id` statistics: a backfill's files of another run are not read."""
    of_runs = {f.path for f in delta_io.files_of_runs(table, runs, version)}
    return [f for f in files if f.path in of_runs and any(_meets([f], key) for key in sampled)]


def _rows_of(keys: Iterable[tuple]) -> pc.Expression:
    """Selects the statistics rows of `keys` (STATS_KEY tuples)."""
    return functools.reduce(operator.or_, [functools.reduce(operator.and_, [pc.field(c) == v for c, v in zip(STATS_KEY, key)]) for key in keys])


def _sample_of(cell: pa.ListScalar) -> np.ndarray:
    """A statistics row's sample as a float32 matrix (no rows where it is null or empty)."""
    if not cell.is_valid or not len(cell):
        return np.zeros((0, 0), np.float32)
    inner = cell.values
    return np.asarray(inner.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(inner), -1)


def _without(sample: np.ndarray, vectors: list[bytes]) -> np.ndarray:
    """`sample` less one row equal to each of `vectors` (those it holds), in its order."""
    left = list(vectors)
    keep = []
    for i, row in enumerate(sample):
        if (found := row.tobytes()) in left:
            left.remove(found)
        else:
            keep.append(i)
    return sample[keep]
