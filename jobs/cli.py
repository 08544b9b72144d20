"""`content-signals`: the command line of the jobs.

    content-signals demo                       # sample corpus -> backfill -> dedup -> what it produced
    content-signals make-corpus --n-items 480
    content-signals backfill --start 2026-11-14 --end 2026-11-20 --set signals.text_embedding.enabled=false
    content-signals refresh                    # only what is new or changed; drops what left the corpus
    content-signals dedup                      # near-duplicate groups over the whole corpus
    content-signals eval                       # everything above with OCR on, then labels vs the truth
    content-signals register image_embedding --source /path/to/new.pth --param weights_path=/path/to/new.pth
    content-signals backfill --challenger --slice-pct 10   # canary: the challenger on a stable 10% of items
    content-signals compare image_embedding                # champion vs challenger: reports/compare/latest.html
    content-signals promote image_embedding challenger     # consumers of the champion follow; rollback undoes it
    content-signals show
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml
from pyspark.sql import SparkSession

from conf.settings import Settings, UsageError, load_settings
from jobs.backfill import run_backfill
from jobs.corpus import Window
from jobs.dedup import run_dedup
from jobs.engine import RunResult
from jobs.failures import explain
from jobs.refresh import run_refresh
from jobs.session import build_session
from jobs.show import console, print_evaluation, print_result, show
from rollout.compare import compare_in_lakehouse, log_to_mlflow, report_metrics, write_report
from rollout.evaluate import run_evaluation
from rollout.models import CHALLENGER, CHAMPION, identity_params, registry_for
from sample_corpus.generate import write_sample_corpus
from signals.catalog import signal_class
from signals.contracts import CORPUS, RUNS


def make_corpus(settings: Settings, n_items: int | None = None, seed: int | None = None) -> None:
    """Generate the sample corpus into the profile's lakehouse (skipped if already there)."""
    n_items = settings.sample_corpus.n_items if n_items is None else n_items
    if n_items < 1:
        raise UsageError(f"a sample corpus needs at least one item, not {n_items}")
    seed = settings.sample_corpus.seed if seed is None else seed
    started = time.monotonic()
    where = settings.table_root(CORPUS.name)
    if write_sample_corpus(settings.lakehouse_root, n_items, seed):
        console.print(f"wrote a sample corpus of {n_items} items (seed {seed}) to {where} in {time.monotonic() - started:.1f}s")
    else:
        console.print(f"the sample corpus of {n_items} items (seed {seed}) is already at {where}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="content-signals", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", default="local", help="conf/<profile>.yaml over conf/base.yaml (default: local)")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a setting")
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("make-corpus", parents=[common], help="generate the sample corpus from real photos")
    corpus.add_argument("--n-items", type=int)
    corpus.add_argument("--seed", type=int)
    for name, text in (("backfill", "compute signals for a window and replace that slice"), ("demo", "make-corpus, backfill, dedup, show")):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("--start", help="first ds (YYYY-MM-DD) of the window; default: the beginning")
        command.add_argument("--end", help="last ds of the window; default: the end")
        command.add_argument("--run-id", help="re-use a run id to resume: a committed run is not redone")
        command.add_argument("--challenger", action="store_true", help="compute the signals' challenger versions, beside the champions")
        command.add_argument("--slice-pct", type=int, default=100, help="with --challenger: a stable percent of items (a canary)")
    refresh = commands.add_parser("refresh", parents=[common], help="compute what is new or changed, drop what left the corpus")
    refresh.add_argument("--run-id", help="re-use a run id: a committed run is not redone")
    refresh.add_argument("--full", action="store_true",
                         help="compare the whole corpus, not only the files changed since the last refresh (after a table was edited by hand)")
    for name, text in (("promote", "point a signal's champion alias at a version"), ("rollback", "move a signal's champion back")):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("signal")
        if name == "promote":
            command.add_argument("version", help="a version number or an alias (e.g. challenger)")
    register = commands.add_parser("register", parents=[common], help="register new weights for a signal's model")
    register.add_argument("signal")
    register.add_argument("--source", required=True, help="a checkpoint file or folder, or a hub tag")
    register.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                          help="a param that identifies the model, e.g. weights_path (YAML values)")
    register.add_argument("--alias", default="challenger", help="alias to point at the new version (default: challenger)")
    compare = commands.add_parser("compare", parents=[common], help="champion against challenger: an HTML report, logged to MLflow")
    compare.add_argument("signals", nargs="*", help="default: every enabled signal with a challenger")
    compare.add_argument("--a", default="champion")
    compare.add_argument("--b", default="challenger")
    dedup = commands.add_parser("dedup", parents=[common], help="rebuild the near-duplicate groups of the whole corpus")
    dedup.add_argument("--run-id")
    commands.add_parser("evaluate", parents=[common], help="labels and duplicate groups against the sample corpus truth")
    commands.add_parser("eval", parents=[common], help="make-corpus, backfill (OCR on), dedup, evaluate")
    commands.add_parser("show", parents=[common], help="what the lakehouse holds")
    return parser


def _promote(settings: Settings, args: argparse.Namespace) -> None:
    registry = registry_for(settings)
    target = registry.resolve(args.signal, args.version).version
    before = registry.promote(args.signal, target, ledger_root=settings.table_root(RUNS.name), signal=args.signal)
    console.print(f"{args.signal}: champion {before} -> {target}; readers of the champion follow, nothing recomputed")


def _rollback(settings: Settings, args: argparse.Namespace) -> None:
    registry = registry_for(settings)
    before = registry.aliases(args.signal).get(CHAMPION)
    after = registry.rollback(args.signal, ledger_root=settings.table_root(RUNS.name), signal=args.signal)
    console.print(f"{args.signal}: champion {before} -> {after} (rolled back); nothing recomputed")


def _register(settings: Settings, args: argparse.Namespace) -> None:
    conf = settings.signals[args.signal]
    given = {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in args.param)}
    params = identity_params(conf.kind, {**conf.params, **given})
    if not_identity := sorted(given.keys() - params.keys()):
        raise ValueError(f"--param {not_identity}: not what identifies a {conf.kind!r} model (its identity params: "
                         f"{list(signal_class(conf.kind).identity_params)}); how it runs is set in the profile")
    registry = registry_for(settings)
    model = registry.register(args.signal, args.source, params, description=conf.model.name)
    registry.client.set_registered_model_alias(args.signal, args.alias, model.version)
    console.print(f"{args.signal}: version {model.version} ({args.source}, sha256 {model.weights_sha256}) is now {args.alias!r}")


def _compare(settings: Settings, args: argparse.Namespace) -> None:
    registry = registry_for(settings)
    names = args.signals or [n for n in settings.enabled_signals if args.b in registry.aliases(n)]
    if not names:
        raise UsageError(f"no signal has a {args.b!r} version to compare; register one first (content-signals register)")
    comparisons = [
        compare_in_lakehouse(settings.lakehouse_root, n, registry.resolve(n, args.a).version, registry.resolve(n, args.b).version)
        for n in names
    ]
    report = write_report(comparisons, Path("reports/compare/latest.html"), f"{args.a} vs {args.b}")
    run_id = log_to_mlflow(settings.registry_uri, report, report_metrics(comparisons), f"compare {args.a} vs {args.b}")
    for c in comparisons:
        console.print(f"{c.signal} {c.version_a} vs {c.version_b}: " + ("; ".join(c.differences) or "no differences"))
    console.print(f"report: {report} (MLflow run {run_id})")


REGISTRY_COMMANDS = {"promote": _promote, "rollback": _rollback, "register": _register, "compare": _compare}


def _spark_steps(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> Iterator[RunResult]:
    """The Spark jobs a command runs, in order, each result as it lands."""
    if args.command == "refresh":
        yield run_refresh(spark, settings, args.run_id, full=args.full)
    elif args.command == "dedup":
        yield run_dedup(spark, settings, args.run_id)
    else:  # backfill, demo, eval
        yield run_backfill(spark, settings, Window(getattr(args, "start", None), getattr(args, "end", None)), getattr(args, "run_id", None),
                           CHALLENGER if getattr(args, "challenger", False) else CHAMPION, getattr(args, "slice_pct", 100))
        if args.command in ("demo", "eval"):
            yield run_dedup(spark, settings)


def run(args: argparse.Namespace) -> None:
    overrides = ["signals.text_in_image.enabled=true", *args.overrides] if args.command == "eval" else args.overrides  # OCR is evaluated
    settings = load_settings(args.profile, overrides)
    if args.command == "make-corpus":
        make_corpus(settings, args.n_items, args.seed)
        return
    if args.command == "show":
        show(settings)
        return
    if args.command == "evaluate":
        print_evaluation(run_evaluation(settings))
        return
    if args.command in REGISTRY_COMMANDS:
        REGISTRY_COMMANDS[args.command](settings, args)
        return
    if args.command in ("demo", "eval"):
        make_corpus(settings)
    spark = build_session(settings.spark)
    try:
        for result in _spark_steps(spark, settings, args):
            print_result(result, settings)
    finally:
        spark.stop()
    if args.command == "demo":
        show(settings)
    if args.command == "eval":
        print_evaluation(run_evaluation(settings))


def _lakehouse_of(args: argparse.Namespace) -> str | None:
    """The lakehouse the command used, if its settings load (for a failure's diagnosis)."""
    try:
        root = load_settings(args.profile, args.overrides).lakehouse_root
    except Exception:  # noqa: BLE001 - the failure being explained may be the settings themselves
        return None
    return None if "://" in root else root


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except Exception as exc:
        failure = explain(exc, _lakehouse_of(args))
        if failure is None:
            raise  # a bug: its traceback is what a developer needs
        console.print(f"[bold red]error:[/] {failure.message}")
        return failure.status
    return 0


def entry() -> None:
    """The console script and `python -m jobs.cli`: `main`, then exit at once with its code.

    Everything the command does is committed and printed before `main` returns; what is left
    is the interpreter's teardown, in which a native library's thread pool in the driver (torch,
    Arrow and delta-rs are loaded) once aborted the process ("terminate called without an
    active exception", SIGABRT) after a successful demo. A scheduler would have retried a run
    that had landed. Leaving without the teardown, after flushing what is buffered, makes the
    exit code the command's."""
    try:
        code = main()
    except Exception:  # noqa: BLE001 - printed whole: an unexpected error is a bug to report
        traceback.print_exc()
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
