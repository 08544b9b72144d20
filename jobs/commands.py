"""What each command of `content-signals` does, once `jobs.cli` has parsed it (imported only
then: it loads torch, MLflow and pyspark)."""
from __future__ import annotations

import argparse
import functools
import re
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import ValidationError
from pyspark.sql import SparkSession

from conf.settings import DuplicateKey, Settings, UsageError, load_settings, read_yaml
from jobs.backfill import check_slice, run_backfill
from jobs.corpus import Window, check_day
from jobs.dedup import run_dedup
from jobs.dry_run import model_versions, print_plan
from jobs.engine import RunResult
from jobs.failures import Failure, explain, settings_errors
from jobs.labelling import champion_versions, label_sample, run_labels
from jobs.maintain import run_maintain
from jobs.monitor import evaluate_monitoring, publish_dashboard, raise_on_alerts, run_monitor
from jobs.refresh import run_refresh
from jobs.session import build_session
from jobs.show import alias_move_said, console, print_evaluation, print_heads, print_monitor, print_neighbours, print_result, print_trained, print_upkeep, show
from lake.ledger import SUCCEEDED
from lake.registry import Registry, RegistryError
from monitoring.monitor import MonitorResult, require_signal_tables
from retrieval import index_store
from retrieval.build import build_index, embeddings_root, indexed_vector, update_index
from retrieval.embedding_rows import pinned_version
from retrieval.vector_index import neighbours
from rollout.compare import Comparison, compare_in_lakehouse, log_to_mlflow, pin_tables, read_said, report_metrics, write_report
from rollout.coverage import coverage
from rollout.evaluate import REPORT, replace_section, run_evaluation
from rollout.models import (
    CHALLENGER,
    CHAMPION,
    champion_version,
    configured_signal,
    heads_reading,
    identity_params,
    model_source,
    registry_for,
    runnable,
)
from rollout.shot_evaluation import evaluate_shots
from sample_corpus.generate import write_sample_corpus
from sample_corpus.photos import folder_photos
from sample_corpus.scenarios import append_scenario_day
from sample_corpus.videos import good_videos
from signals.catalog import signal_class
from signals.contracts import CORPUS, RUNS
from signals.weights import local_path
from training.gate import promotion_refusals
from training.heads_evaluation import evaluate_heads, write_heads_report
from training.tasks import task_named
from training.train import ReadVersions, embedding_signals, label_frames, train_task

EVAL_FOLDER = REPORT.parent  # the heads page and the simulated annotators' exports, beside the report
SCENARIO_ITEMS = 64  # items of an appended scenario day: enough for every rule's min_rows
RUN_ID = re.compile(r"[^\s/]+")  # a run id is part of its data files' names (jobs.engine.Run)


def make_corpus(settings: Settings, n_items: int | None = None, seed: int | None = None, videos: bool | None = None) -> None:
    """Generate the sample corpus into the profile's lakehouse (skipped if already there), with
    the sample videos if `videos` (default: `sample_corpus.videos`), cut from the photos of the wheels
    and of the folder `sample_corpus.photos`."""
    n_items = settings.sample_corpus.n_items if n_items is None else n_items
    if n_items < 1:
        raise UsageError(f"a sample corpus needs at least one item, not {n_items}")
    seed = settings.sample_corpus.seed if seed is None else seed
    started = time.monotonic()
    where = settings.table_root(CORPUS.name)
    videos = settings.sample_corpus.videos if videos is None else videos
    photos = settings.sample_corpus.photos
    if photos:
        try:
            folder_photos(photos)
        except ValueError as e:
            raise UsageError(f"sample_corpus.photos: {e}") from e
    if write_sample_corpus(settings.lakehouse_root, n_items, seed, videos, photos):
        with_videos = (" and the sample videos" if videos else "") + (f" (with the photos of {photos})" if photos else "")
        console.print(f"wrote a sample corpus of {n_items} items{with_videos} (seed {seed}) to {where} in {time.monotonic() - started:.1f}s")
    else:
        console.print(f"the sample corpus of {n_items} items (seed {seed}) is already at {where}")


def _promote(settings: Settings, args: argparse.Namespace) -> None:
    registry = registry_for(settings, existing=True)
    model = registry.resolve(args.signal, args.version)
    if args.signal in settings.signals:  # a version every run would refuse is not forced into place either
        runnable(args.signal, model, settings.signals[args.signal].kind)
    target, champion = model.version, registry.aliases(args.signal).get(CHAMPION)
    refusals = promotion_refusals(settings, registry, args.signal, target, champion)
    if refusals and not args.force:
        raise UsageError(f"{args.signal} version {target} not promoted: " + "; ".join(refusals) + " (--force promotes it anyway)")
    for refusal in refusals:
        console.print(f"[yellow]forced past:[/] {refusal}")
    before = registry.promote(args.signal, target, ledger_root=settings.table_root(RUNS.name), signal=args.signal,
                              expected=champion)  # the champion the checks judged against
    console.print(f"{args.signal}: champion {before} -> {target}; " + (_pin_kept(settings, args.signal) or "readers of the champion follow, nothing recomputed"))
    _note_heads_left_behind(settings, registry, args.signal, before, target)


def _rollback(settings: Settings, args: argparse.Namespace) -> None:
    registry = registry_for(settings, existing=True)
    before = registry.aliases(args.signal).get(CHAMPION)
    after = registry.rollback(args.signal, ledger_root=settings.table_root(RUNS.name), signal=args.signal,
                              expected=before)  # the champion this command says it rolls back
    console.print(f"{args.signal}: champion {before} -> {after} (rolled back); " + (_pin_kept(settings, args.signal) or "nothing recomputed"))
    _note_heads_left_behind(settings, registry, args.signal, before, after)
    if before is not None and not (covered := coverage(settings.lakehouse_root, args.signal, before, after)).complete:
        readers, refresh = ((f"readers of the champion without the pin (another profile, a Lakehouse without "
                             f"signals.{args.signal}.model.version)", "`content-signals refresh` under a profile without the pin")
                            if _pinned(settings, args.signal) else ("readers of the champion", "`content-signals refresh`"))
        console.print(f"[yellow]note:[/] version {after} {' and '.join(covered.shortfalls('the version rolled back from'))}: {readers} "
                      f"see them so until {refresh} computes them (after a champion change it compares the whole corpus)", soft_wrap=True)


def _note_heads_left_behind(settings: Settings, registry: Registry, signal: str, before: str | None, after: str) -> None:
    """Say which enabled heads read the embedding version `signal`'s champion moved away from (`heads_reading`): their rows
    of new or changed items become errors, where promote and rollback said only that readers of the champion follow."""
    if before is None or before == after or _pinned(settings, signal) or not (heads := heads_reading(settings, registry, signal, before)):
        return  # a profile pinning the signal keeps computing `before`
    console.print(f"[yellow]note:[/] {', '.join(heads)} {'reads' if len(heads) == 1 else 'read'} {signal} version {before}, which a "
                  f"refresh no longer computes: its rows of items new or changed from now on are errors (\"no {signal} row of model "
                  f"version {before}\"), retried by each refresh, until a head trained on {signal} version {after} is promoted "
                  f"(content-signals train TASK, backfill --challenger, compare, promote)", soft_wrap=True)


def _pinned(settings: Settings, signal: str) -> str | None:
    """The model version the profile pins `signal` to (`model.version`), which its jobs and `Lakehouse.of(settings)` read; None unpinned."""
    return settings.signals[signal].model.version if signal in settings.signals else None


def _pin_kept(settings: Settings, signal: str) -> str | None:
    """What a move of the champion changes nothing of where the profile pins the signal's `model.version`
    (the jobs and `Lakehouse.of(settings)` read the pin): said, where promote once said readers follow."""
    pinned = _pinned(settings, signal)
    return (f"the profile pins {signal} to model version {pinned} (signals.{signal}.model.version): its jobs, and readers of "
            f"Lakehouse.of(settings), keep running and reading version {pinned} until the pin is removed") if pinned else None


def _register(settings: Settings, args: argparse.Namespace) -> None:
    if args.alias == CHAMPION:  # promote checks coverage and the gate, and keeps what rollback undoes
        raise UsageError(f"--alias {CHAMPION}: the champion moves only by `content-signals promote`; register the version as "
                         f"{CHALLENGER} (the default), then promote it")
    if args.signal not in settings.signals:
        raise UsageError(f"no signal {args.signal!r} in the profile; its signals: {', '.join(settings.signals)}")
    if malformed := [p for p in args.param if "=" not in p]:
        raise UsageError(f"--param {malformed[0]!r} is not of the form name=value")
    conf = settings.signals[args.signal]
    try:
        given = {k: read_yaml(v) for k, v in (p.split("=", 1) for p in args.param)}
    except DuplicateKey as e:
        raise UsageError(f"--param {args.param}: a value gives {e.key!r} twice; keep one") from None
    except yaml.YAMLError as e:
        raise UsageError(f"--param {args.param}: a value is not YAML ({str(e).splitlines()[0]}); quote it") from None
    signal = configured_signal(settings, args.signal, given)
    weights, params = signal.weights_source(), identity_params(conf.kind, signal.config.params)
    names = list(signal_class(conf.kind).identity_names())
    if not_identity := sorted(given.keys() - set(names)):
        raise UsageError(f"--param {not_identity}: not what identifies a {conf.kind!r} model (its identity params: "
                         f"{names}); how it runs is set in the profile")
    source = model_source(signal)
    if weights is None and args.source != source:
        raise UsageError(f"--source {args.source}: the versions of {args.signal} ({conf.kind}) come from its code, --source {source}")
    if (local_path(args.source) or args.source) != (local_path(source) or source):  # a path not there is refused before a registry is made
        raise UsageError(f"--source {args.source} is not the weights the version's params load ({source}): its workers would refuse "
                         f"them against the sha256 of --source; name the source in its identity param too (of "
                         f"{names}, e.g. --param weights_path={args.source})")
    registry = registry_for(settings)
    model = registry.register(args.signal, args.source, params, description=conf.model.name,
                              identifies=functools.partial(identity_params, conf.kind), code_sha256=signal.code_sha256())
    replaced = registry.point_alias(args.signal, args.alias, model.version)
    hashed = f"sha256 {model.weights_sha256}" if weights is not None else f"code sha256 {signal.code_sha256()}"
    console.print(f"{args.signal}: version {model.version} ({args.source}, {hashed}) "
                  f"{alias_move_said(args.alias, model.version, replaced)}")


def _compare(settings: Settings, args: argparse.Namespace) -> None:
    registry = registry_for(settings, existing=True)
    names = args.signals or [n for n in settings.enabled_signals if _names_a_version(registry, n, args.b)]
    if not names:
        raise UsageError(f"no enabled signal has a version {args.b!r} to compare; register one first (content-signals register)")
    pinned = pin_tables(settings.lakehouse_root)  # one snapshot for every signal compared, whatever commits meanwhile
    comparisons = [_comparison(settings, registry, n, args.a, args.b, pinned) for n in names]
    read = {table: version for c in comparisons for table, version in c.read_versions.items()}  # the tables any of them read
    report = write_report(comparisons, Path("reports/compare/latest.html"), f"{args.a} vs {args.b}")
    run_id = log_to_mlflow(settings.registry_uri, report, report_metrics(comparisons), f"compare {args.a} vs {args.b}",
                           settings.registry.artifact_location, params={f"{table}_version": str(v) for table, v in read.items()})
    for c in comparisons:
        console.print(f"{c.signal} {c.version_a} vs {c.version_b}: " + ("; ".join(c.differences) or "no differences"))
    console.print(f"read at {read_said(read)}", soft_wrap=True)
    console.print(f"report: {report} (MLflow run {run_id})")


def _names_a_version(registry: Registry, signal: str, ref: str) -> bool:
    """Whether `ref` (an alias, latest or a version number) names a version of `signal`: compare's signals when none are
    named (it took only an alias, so `--b 2` or `--b latest` found no signal to compare)."""
    try:
        registry.resolve(signal, ref)
    except RegistryError:
        return False
    return True


def _comparison(settings: Settings, registry: Registry, signal: str, a: str, b: str, pinned: dict[str, int | None]) -> Comparison:
    """`signal` at versions `a` and `b` compared, its tables read at `pinned`; a version without rows is the user's to compute, not a bug."""
    version_a, version_b = registry.resolve(signal, a).version, registry.resolve(signal, b).version
    try:
        return compare_in_lakehouse(settings.lakehouse_root, signal, version_a, version_b, pinned=pinned)
    except LookupError as e:
        raise UsageError(f"{e}: compute its rows first (`content-signals backfill --challenger` for the challenger; a "
                         "--slice-pct whose share of the window holds no item computes none)") from None


def _train(settings: Settings, args: argparse.Namespace) -> None:
    embedding_signals(settings, task_named(args.task).name, args.embedding)  # an unknown task, or a signal that is no embedding, before any table is read
    pinned_version(embeddings_root(settings.lakehouse_root), None)  # a lakehouse without embeddings (mistyped?) before a registry is made there
    reads = ReadVersions.latest(settings)
    labels, gold, majority = label_frames(settings.lakehouse_root, args.task, args.labels, reads)
    trained = train_task(settings, args.task, labels, args.labels, args.embedding, gold, majority, reads=reads)
    print_trained(trained)


REGISTRY_COMMANDS = {"train": _train, "promote": _promote, "rollback": _rollback, "register": _register, "compare": _compare}


def _champion_of(settings: Settings, signal: str) -> str:
    """The model version an index of `signal` holds: its champion's, once the table is known to exist."""
    if signal not in settings.signals:
        raise UsageError(f"no signal {signal!r} in the profile; signals: {', '.join(sorted(settings.signals))}")
    pinned_version(embeddings_root(settings.lakehouse_root), None)  # a missing table is said before the registry is opened
    return champion_version(settings, signal)


def _index(settings: Settings, args: argparse.Namespace) -> None:
    make = update_index if args.update else build_index
    outcome = make(settings.lakehouse_root, args.signal, _champion_of(settings, args.signal), settings.index, args.version)
    console.print(outcome.message)
    console.print(f"manifest: {index_store.signal_folder(settings.lakehouse_root, args.signal)}/{index_store.MANIFEST}", soft_wrap=True)


def _neighbours(settings: Settings, args: argparse.Namespace) -> None:
    if args.k < 1:
        raise UsageError(f"-k {args.k}: ask for at least one neighbour")
    manifest, index = index_store.load(settings.lakehouse_root, args.signal)
    vector = indexed_vector(settings.lakehouse_root, manifest, args.content_id)
    found = [(c, score) for c, score in neighbours(index, vector, args.k + 1) if c != args.content_id][: args.k]
    champion = _champion_of(settings, args.signal)
    print_neighbours(manifest, args.content_id, found)
    if champion != manifest.model_version:
        console.print(f"note: the champion of {args.signal} is now model version {champion}; build its index: content-signals index {args.signal}")


def _maintain(settings: Settings, args: argparse.Namespace) -> None:
    print_upkeep(run_maintain(settings, args.tables, args.dry_run))


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from serving.server import serve  # uvicorn and the service load only for this command

    where = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        serve_settings = settings.serve.model_validate({**settings.serve.model_dump(), **where})
    except ValidationError as e:
        raise UsageError(f"serve: {settings_errors(e)}") from None
    if settings.registry.enabled:  # the champions are read, never made: a mistyped (or cwd-relative) lakehouse is refused
        registry_for(settings, existing=True)
    serve(settings.model_copy(update={"serve": serve_settings}))


DRIVER_COMMANDS = {**REGISTRY_COMMANDS, "index": _index, "neighbours": _neighbours, "maintain": _maintain, "serve": _serve}  # delta-rs only: no Spark session
DRIVER_COMMANDS |= {"labels": run_labels, "label-sample": label_sample}


def _spark_steps(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> Iterator[RunResult]:
    """The Spark jobs a command runs, in order, each result as it lands."""
    if args.command == "monitor":
        return
    if args.command == "refresh":
        yield run_refresh(spark, settings, args.run_id, full=args.full)
    elif args.command == "dedup":
        yield run_dedup(spark, settings, args.run_id)
    else:  # backfill, demo, eval
        yield run_backfill(spark, settings, Window(getattr(args, "start", None), getattr(args, "end", None)), getattr(args, "run_id", None),
                           CHALLENGER if getattr(args, "challenger", False) else CHAMPION, getattr(args, "slice_pct", 100))
        if args.command in ("demo", "eval"):
            yield run_dedup(spark, settings)


def _monitor(spark: SparkSession, settings: Settings, run_id: str | None, day: str | None = None, recompute: bool = False,
             every: bool = False) -> MonitorResult:
    """Monitor a run, print its alerts (`every`: each verdict), and publish its dashboard (a page and an MLflow artifact)."""
    result = run_monitor(spark, settings, run_id, day, recompute)
    print_monitor(result, every)
    console.print(f"drawing the dashboard of run {result.run_id} and logging it to MLflow ...", soft_wrap=True)
    page, mlflow_run = publish_dashboard(settings, result)
    console.print(f"dashboard: {page} (MLflow run {mlflow_run})", soft_wrap=True)
    return result


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse what the command line alone shows is wrong, before a Spark session starts (seconds) or a plan is printed."""
    Window(getattr(args, "start", None), getattr(args, "end", None))
    check_slice(getattr(args, "slice_pct", 100), CHALLENGER if getattr(args, "challenger", False) else CHAMPION)
    if args.command in ("monitor", "make-corpus") and args.day is not None:
        check_day(args.day, "--day")
    run_id = getattr(args, "run_id", None)
    if run_id is not None and not RUN_ID.fullmatch(run_id):  # empty: `--run-id "$UNSET"`, which ran under a new id
        raise UsageError(f"--run-id {run_id!r}: a run id names the run's data files and commits: give one that is not empty "
                         "(an unset variable?), without '/' or spaces")
    if getattr(args, "seed", None) is not None and args.seed < 0:  # make-corpus, labels simulate: numpy's generators refuse it
        raise UsageError(f"--seed {args.seed}: a seed is not negative")
    if args.command == "make-corpus" and args.scenario and args.n_items is not None and args.n_items < 1:
        raise UsageError(f"--n-items {args.n_items}: a scenario day needs at least one item")
    if args.command == "make-corpus" and not args.scenario and args.day is not None:  # it wrote the whole corpus again, the day ignored
        raise UsageError(f"--day {args.day}: the day of an appended --scenario day; without --scenario make-corpus writes the whole "
                         "corpus again (add --scenario normal to append a day)")
    if args.command == "make-corpus" and args.scenario and args.videos:
        raise UsageError("--videos: the sample videos join a whole corpus (make-corpus --videos), not an appended --scenario day")


def run(args: argparse.Namespace) -> None:
    """Do what the parsed command line asks."""
    _check_arguments(args)
    overrides = ["signals.text_in_image.enabled=true", *args.overrides] if args.command == "eval" else args.overrides  # OCR is evaluated
    settings = load_settings(args.profile, overrides)
    if args.command == "make-corpus" and args.scenario:
        day = append_scenario_day(settings.lakehouse_root, args.scenario, args.n_items or SCENARIO_ITEMS,
                                  settings.sample_corpus.seed if args.seed is None else args.seed, args.day)
        console.print(f"appended a {args.scenario} day ({day}) to {settings.table_root(CORPUS.name)}")
        return
    if args.command == "make-corpus":
        make_corpus(settings, args.n_items, args.seed, args.videos or None)
        return
    if args.command == "show":
        show(settings)
        return
    if args.command == "evaluate":
        print_evaluation(run_evaluation(settings))
        return
    if args.command == "eval" and args.only == "heads":
        heads = evaluate_heads(settings, champion_versions(settings), EVAL_FOLDER)
        replace_section("heads", heads)
        print_heads(heads)
        console.print(f"heads: {write_heads_report(heads, EVAL_FOLDER / 'heads.html')} (section of {REPORT})")
        return
    if args.command in DRIVER_COMMANDS:
        DRIVER_COMMANDS[args.command](settings, args)
        return
    if getattr(args, "dry_run", False):
        print_plan(settings, args)
        return
    if getattr(args, "challenger", False):  # no challenger to compute: refused before a Spark session starts or a registry is made
        model_versions(settings, list(settings.enabled_signals), challenger=True)
    if args.command == "monitor":  # a mistyped lakehouse is refused before a Spark session starts (seconds)
        require_signal_tables(settings)
    if args.command in ("demo", "eval"):
        make_corpus(settings, videos=True)  # eval: the sample videos' duplicates are counted against their truth
    spark = build_session(settings.spark)
    monitored, monitoring_report = [], {}
    try:
        if args.command == "monitor":
            monitored.append(_monitor(spark, settings, args.run_id, args.day, args.recompute, args.all))
        for result in _spark_steps(spark, settings, args):
            print_result(result, settings)
            if getattr(args, "monitor", False):
                if result.status != SUCCEEDED:
                    console.print(f"run {result.run_id}: {result.status}, nothing new to monitor")
                elif not any(o.rows_in for o in result.outcomes):  # a refresh that only took items down: was exit 2 after a run that succeeded
                    console.print(f"run {result.run_id} wrote no signal rows of its own (it only removed rows): nothing new to monitor")
                else:
                    monitored.append(_monitor(spark, settings, result.run_id))
        if args.command == "eval":
            monitoring_report = evaluate_monitoring(spark, settings)
    finally:
        spark.stop()
    raise_on_alerts(monitored)
    if args.command == "demo":
        show(settings)
    if args.command == "eval":
        shots = evaluate_shots(good_videos(settings.sample_corpus.seed), settings.video.reading)
        heads = evaluate_heads(settings, champion_versions(settings), EVAL_FOLDER)
        print_evaluation(run_evaluation(settings, {"monitoring": monitoring_report, "video_shots": shots, "heads": heads}))
        console.print(f"heads: {write_heads_report(heads, EVAL_FOLDER / 'heads.html')}")


def _lakehouse_of(args: argparse.Namespace) -> str | None:
    """The lakehouse the command used, if its settings load (for a failure's diagnosis)."""
    try:
        root = load_settings(args.profile, args.overrides).lakehouse_root
    except Exception:  # noqa: BLE001 - the failure being explained may be the settings themselves
        return None
    return None if "://" in root else root


def explain_failure(exc: Exception, args: argparse.Namespace) -> Failure | None:
    """The command's failure as the user should see it (jobs.failures.explain), None for a bug."""
    return explain(exc, _lakehouse_of(args))


