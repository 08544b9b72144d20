"""`content-signals`: the command line of the jobs.

    content-signals demo                       # sample corpus -> backfill -> dedup -> what it produced
    content-signals make-corpus --n-items 480
    content-signals make-corpus --scenario thumbnails      # append a day that should raise alerts (monitor)
    content-signals backfill --start 2026-11-14 --end 2026-11-20 --set signals.text_embedding.enabled=false
    content-signals refresh                    # only what is new or changed; drops what left the corpus
    content-signals dedup                      # near-duplicate groups over the whole corpus
    content-signals eval                       # everything above with OCR on, then labels vs the truth
    content-signals eval --only heads          # only the heads section, on the lakehouse an eval built
    content-signals register image_embedding --source /path/to/new.pth --param weights_path=/path/to/new.pth
    content-signals backfill --challenger --slice-pct 10   # canary: the challenger on a stable 10% of items
    content-signals compare image_embedding                # champion vs challenger: reports/compare/latest.html
    content-signals promote image_embedding challenger     # consumers of the champion follow; rollback undoes it
    content-signals index image_embedding                  # a faiss index of the champion's vectors; --update applies a refresh's changes
    content-signals neighbours image_embedding pin-000042 -k 10
    content-signals show
    content-signals labels import labels.json --task low_quality   # human labels; labels gold|weak|simulate --task T
    content-signals label-sample low_quality --n 200               # the items worth labelling next, for Label Studio
    content-signals serve --port 8080                      # the champion signals online: POST /score one item, GET /health
    content-signals maintain                               # compact small files, vacuum and expire the log past what named versions need
    content-signals monitor                                # the latest run's statistics, drift and alerts (exit 5 on an alert)
    content-signals train low_quality --labels both        # a head on the stored embeddings, registered as head_low_quality's challenger
    content-signals backfill --dry-run                     # the plan: window, signals, versions, corpus, Spark; nothing runs
    spark-submit --master spark://host:7077 --py-files dist/content_signals-0.1.0.zip jobs/cli.py backfill --profile cluster-cpu
"""
# Only the standard library is imported here, so `--help` and a wrong command answer at once;
# torch, MLflow and pyspark load with jobs.commands, once a command runs.
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from jobs.exit_statuses import BUG, DONE, exit_statuses_help

if __name__ == "__main__" and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # run as a file (spark-submit jobs/cli.py): the modules beside it must not shadow top-level ones


RUN_ID_HELP = ("the run's id (default: a new one; no '/' or spaces); a scheduler that retries with the same id gets a run whose commits "
               "landed recognised and not redone, and one that died before committing redone")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="content-signals", description=__doc__, epilog=exit_statuses_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", default="local", help="conf/<profile>.yaml over conf/base.yaml (default: local)")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a setting")
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("make-corpus", parents=[common], help="generate the sample corpus from real photos")
    corpus.add_argument("--n-items", type=int, help="items in the corpus (default: the profile's sample_corpus.n_items, 480)")
    corpus.add_argument("--seed", type=int, help="one seed, one corpus (default: the profile's sample_corpus.seed, 7)")
    corpus.add_argument("--scenario", choices=("normal", "thumbnails", "truncated", "language"),
                        help="append a day of this scenario to the corpus (sample_corpus/scenarios.py): --n-items items (default 64)")
    corpus.add_argument("--day", help="with --scenario: the day to append (default: the day after the corpus's last)")
    corpus.add_argument("--videos", action="store_true", help="add the sample videos (sample_corpus/videos.py) as extra items")
    for name, text in (("backfill", "compute signals for a window and replace that slice"), ("demo", "make-corpus, backfill, dedup, show")):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("--start", help="first ds (YYYY-MM-DD) of the window; default: the beginning")
        command.add_argument("--end", help="last ds of the window; default: the end")
        command.add_argument("--run-id", help=RUN_ID_HELP)
        command.add_argument("--challenger", action="store_true", help="compute the signals' challenger versions, beside the champions")
        command.add_argument("--slice-pct", type=int, default=100, help="with --challenger: a stable percent of items (a canary)")
    refresh = commands.add_parser("refresh", parents=[common], help="compute what is new or changed, drop what left the corpus")
    refresh.add_argument("--run-id", help=RUN_ID_HELP)
    refresh.add_argument("--full", action="store_true",
                         help="compare the whole corpus, not only the files changed since the last refresh (after a table was edited by hand)")
    for name, text in (("promote", "point a signal's champion alias at a version"), ("rollback", "move a signal's champion back")):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("signal")
        if name == "promote":
            command.add_argument("version", help="a version number or an alias (e.g. challenger)")
            command.add_argument("--force", action="store_true",
                                 help="promote even when the version covers fewer items than the champion or a head fails the gate")
    register = commands.add_parser("register", parents=[common], help="register new weights for a signal's model")
    register.add_argument("signal")
    register.add_argument("--source", required=True, help="a checkpoint file or folder, or a hub tag; a signal without weights: its code (code:module.Class)")
    register.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                          help="a param that identifies the model, e.g. weights_path (YAML values)")
    register.add_argument("--alias", default="challenger", help="alias to point at the new version (default: challenger)")
    compare = commands.add_parser("compare", parents=[common], help="champion against challenger: an HTML report, logged to MLflow")
    compare.add_argument("signals", nargs="*", help="default: every enabled signal with a challenger")
    compare.add_argument("--a", default="champion", help="an alias, latest or a version number (default: champion)")
    compare.add_argument("--b", default="challenger", help="an alias, latest or a version number (default: challenger)")
    dedup = commands.add_parser("dedup", parents=[common], help="rebuild the near-duplicate groups of the whole corpus")
    dedup.add_argument("--run-id", help=RUN_ID_HELP)
    for command in (commands.choices["backfill"], refresh):
        command.add_argument("--monitor", action="store_true",
                             help="then monitor the run: statistics, drift against the reference days, alerts (exit 5 when one fires)")
    monitor = commands.add_parser("monitor", parents=[common],
                                  help="statistics, drift and alerts of a run (default: the latest); exit 5 when an alert fires")
    which = monitor.add_mutually_exclusive_group()
    which.add_argument("--run-id", help="the run to monitor")
    which.add_argument("--day", help="monitor the latest run that wrote this day (YYYY-MM-DD), that day only")
    monitor.add_argument("--recompute", action="store_true", help="compute the run's statistics again, even if kept")
    monitor.add_argument("--all", action="store_true", help="print every verdict, not only the alerts")
    for command in (commands.choices["backfill"], refresh, dedup):
        command.add_argument("--dry-run", action="store_true",
                             help="print the plan (window, signals and model versions, corpus version and partitions, Spark master and "
                                  "resources) and stop: nothing is computed, registered or committed")
    maintain = commands.add_parser("maintain", parents=[common],
                                   help="table upkeep: compact small files, vacuum what no named version needs, checkpoint grown logs, expire old log entries")
    maintain.add_argument("--tables", nargs="+", metavar="TABLE",
                          help="embeddings, labels, keyframes, duplicates, runs, signal_stats, alerts, human_labels, weak_labels, corpus "
                               "(default: all of them; the corpus only if it is the sample corpus)")
    maintain.add_argument("--dry-run", action="store_true", help="print what it would do, per table, and change nothing")
    index = commands.add_parser("index", parents=[common], help="a nearest-neighbour index of a signal's champion vectors (lakehouse/_indexes)")
    index.add_argument("signal", help="an embedding signal, e.g. image_embedding")
    index.add_argument("--version", type=int, help="the embeddings table version to index (default: the latest)")
    index.add_argument("--update", action="store_true",
                       help="apply only what changed in the table since the version the current index was built from")
    neighbours = commands.add_parser("neighbours", parents=[common], help="an item's nearest neighbours in a signal's index")
    neighbours.add_argument("signal")
    neighbours.add_argument("content_id")
    neighbours.add_argument("-k", type=int, default=10, help="how many (default 10)")
    train = commands.add_parser("train", parents=[common],
                                help="train a head for a task on the stored embeddings, evaluate it on held-out gold, register it as the challenger")
    train.add_argument("task", help="low_quality, text_heavy or spam_text (training/tasks.py)")
    train.add_argument("--labels", choices=("weak", "gold", "both"), default="both",
                       help="train on weak labels, gold labels, or both (gold where an item has it; default)")
    train.add_argument("--embedding", help="the embedding signal the head reads (default: training.embeddings of the task); "
                                           "image_embedding+text_embedding: both vectors concatenated, run as a joined_embedding_head")
    commands.add_parser("evaluate", parents=[common], help="labels, duplicate groups and retrieval against the sample corpus truth")
    evaluation = commands.add_parser("eval", parents=[common], help="make-corpus, backfill (OCR on), dedup, evaluate")
    evaluation.add_argument("--only", choices=("heads",),
                            help="only this section, on the lakehouse a whole eval built: its part of the report is replaced, the rest kept")
    commands.add_parser("show", parents=[common], help="what the lakehouse holds")
    _labels_parsers(commands, common)
    serve = commands.add_parser("serve", parents=[common],
                                help="serve the champion signals over HTTP: one item in, embeddings, labels and neighbours out")
    serve.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: serve.port; 0: any free port)")
    return parser


def _labels_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`labels ...` (human labels, gold, weak labels) and `label-sample` (docs/design.md, Training our own signals)."""
    labels = commands.add_parser("labels", help="human labels, gold labels and weak labels of the training tasks")
    steps = labels.add_subparsers(dest="labels_command", required=True)
    imports = steps.add_parser("import", parents=[common], help="import a Label Studio JSON export or a CSV, whole or not at all (exit 2)")
    imports.add_argument("file")
    simulate = steps.add_parser("simulate", parents=[common], help="simulated annotators' exports from the sample corpus truth")
    simulate.add_argument("--out", default="reports/labels", help="folder of the exports (default reports/labels)")
    simulate.add_argument("--n", type=int, help="items judged (default: every item)")
    simulate.add_argument("--seed", type=int, default=7, help="one seed, the same annotators' votes (default 7)")
    steps.add_parser("gold", parents=[common], help="gold labels (Dawid-Skene), annotators' reliability and agreement")
    weak = steps.add_parser("weak", parents=[common], help="labeling functions -> label model -> weak_labels; a report per task")
    weak.add_argument("--out", default="reports/labels", help="folder of the JSON report (default reports/labels)")
    for step in (imports, simulate, steps.choices["gold"], weak):
        step.add_argument("--task", required=True, help="low_quality, text_heavy or spam_text (training/tasks.py)")
    sample = commands.add_parser("label-sample", parents=[common], help="items worth labelling next, as a Label Studio task file")
    sample.add_argument("task")
    sample.add_argument("--n", type=int, default=200, help="items to pick (default 200)")
    sample.add_argument("--out", help="the task file (default reports/labels/<task>-tasks.json)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line's command; its exit status (jobs/failures.py), or its traceback for a bug."""
    args = _parser().parse_args(argv)
    from rich.markup import escape

    from jobs import commands

    try:
        commands.run(args)
    except Exception as exc:
        failure = commands.explain_failure(exc, args)
        if failure is None:
            raise  # a bug: its traceback is what a developer needs
        commands.console.print(f"[bold red]error:[/] {escape(failure.message)}")
        return failure.status
    return DONE


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
        code = BUG
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
