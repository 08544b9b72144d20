"""`content-signals`: the command line of the jobs.

    content-signals demo                       # sample corpus -> backfill -> what it produced
    content-signals make-corpus --n-items 480
    content-signals backfill --start 2026-11-14 --end 2026-11-20 --set signals.text_embedding.enabled=false
    content-signals refresh                    # only what is new or changed; drops what left the corpus
    content-signals show
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from rich.console import Console
from rich.table import Table

from jobs.backfill import Window, run_backfill
from jobs.engine import RunResult
from jobs.config import Settings, load_settings
from jobs.lakehouse import Lakehouse
from jobs.refresh import run_refresh
from jobs.sample_corpus import write_sample_corpus
from jobs.session import build_session
from signals.contracts import CORPUS, EMBEDDINGS, RUNS

console = Console(width=None if sys.stdout.isatty() else 160)  # logs and pipes keep whole paths
def make_corpus(settings: Settings, n_items: int | None = None, seed: int | None = None) -> None:
    """Generate the sample corpus into the profile's lakehouse (skipped if already there)."""
    n_items = n_items or settings.sample_corpus.n_items
    seed = settings.sample_corpus.seed if seed is None else seed
    started = time.monotonic()
    where = settings.table_root(CORPUS.name)
    if write_sample_corpus(settings.lakehouse_root, n_items, seed):
        console.print(f"wrote a sample corpus of {n_items} items (seed {seed}) to {where} in {time.monotonic() - started:.1f}s")
    else:
        console.print(f"the sample corpus of {n_items} items (seed {seed}) is already at {where}")


def print_result(result: RunResult, settings: Settings) -> None:
    if result.status == "skipped":
        console.print(f"run {result.run_id} was already committed (table version {result.table_version}): nothing to do")
        return
    if result.table_version is None:
        console.print(f"run {result.run_id}: {result.status} ({result.message}); nothing committed")
        return
    table = Table(title=f"{result.run_id} -> {settings.table_root(EMBEDDINGS.name)} version {result.table_version}")
    for column in ("signal", "model", "rows computed", "ok", "error"):
        table.add_column(column, justify="left" if column in ("signal", "model") else "right")
    for o in result.outcomes:
        table.add_row(o.signal, f"{o.model.name}@{o.model.version}", str(o.rows_in), str(o.rows_ok), str(o.rows_error))
    console.print(table)


def show(settings: Settings) -> None:
    """Print every table of the lakehouse, and what the embeddings and the last runs hold."""
    lakehouse = Lakehouse(settings.lakehouse_root)
    overview = Table(title=f"lakehouse {lakehouse.root}")
    for column in ("table", "version", "rows", "path"):
        overview.add_column(column)
    for name in lakehouse.tables():
        dataset = DeltaTable(lakehouse.path(name)).to_pyarrow_dataset()
        overview.add_row(name, str(lakehouse.version(name)), str(dataset.count_rows()), lakehouse.path(name))
    console.print(overview)
    if EMBEDDINGS.name in lakehouse.tables():
        rows = lakehouse.arrow(EMBEDDINGS.name).select(["signal", "model_version", "status", "dim", "error"])
        counts = rows.group_by(["signal", "model_version", "status", "dim"]).aggregate([([], "count_all")])
        summary = Table(title="embeddings by signal, model version and status")
        for column in counts.column_names:
            summary.add_column(column)
        for row in counts.sort_by([("signal", "ascending"), ("status", "ascending")]).to_pylist():
            summary.add_row(*[str(v) for v in row.values()])
        console.print(summary)
        errors = rows.filter(pc.equal(rows["status"], "error"))
        reasons = pa.table({"reason": pc.utf8_slice_codeunits(errors["error"], 0, 60)}).group_by("reason").aggregate([([], "count_all")])
        console.print("error reasons:", json.dumps(dict(zip(reasons["reason"].to_pylist(), reasons["count_all"].to_pylist())), indent=1))
    if RUNS.name in lakehouse.tables():
        runs = lakehouse.pandas(RUNS.name).sort_values("finished_at").tail(6)
        console.print("latest runs:")
        console.print(runs[["run_id", "signal", "rows_in", "rows_ok", "rows_error", "status", "table_version", "duration_s"]].to_string(index=False))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="content-signals", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", default="local", help="conf/<profile>.yaml over conf/base.yaml (default: local)")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a setting")
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("make-corpus", parents=[common], help="generate the sample corpus from real photos")
    corpus.add_argument("--n-items", type=int)
    corpus.add_argument("--seed", type=int)
    for name, text in (("backfill", "compute signals for a window and replace that slice"), ("demo", "make-corpus, backfill, show")):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("--start", help="first ds (YYYY-MM-DD) of the window; default: the beginning")
        command.add_argument("--end", help="last ds of the window; default: the end")
        command.add_argument("--run-id", help="re-use a run id to resume: a committed run is not redone")
    refresh = commands.add_parser("refresh", parents=[common], help="compute what is new or changed, drop what left the corpus")
    refresh.add_argument("--run-id", help="re-use a run id: a committed run is not redone")
    commands.add_parser("show", parents=[common], help="what the lakehouse holds")
    return parser


def run(args: argparse.Namespace) -> None:
    settings = load_settings(args.profile, args.overrides)
    if args.command == "make-corpus":
        make_corpus(settings, args.n_items, args.seed)
        return
    if args.command == "show":
        show(settings)
        return
    if args.command == "demo":
        make_corpus(settings)
    spark = build_session(settings.spark)
    try:
        if args.command == "refresh":
            result = run_refresh(spark, settings, args.run_id)
        else:
            result = run_backfill(spark, settings, Window(args.start, args.end), args.run_id)
    finally:
        spark.stop()
    print_result(result, settings)
    if args.command == "demo":
        show(settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except (FileNotFoundError, ValueError, KeyError) as exc:  # bad configuration or input: say what, no trace
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
