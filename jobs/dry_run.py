"""`--dry-run`: what a backfill, refresh or dedup would run, read from the configuration, the
registry, the corpus's Delta log and spark-submit's settings, without starting Spark, computing,
registering or committing anything.

    content-signals backfill --start 2026-11-14 --end 2026-11-20 --dry-run
"""
from __future__ import annotations

import argparse
import re
from collections import defaultdict

from deltalake import DeltaTable

from conf.settings import Settings, UsageError
from jobs.corpus import CorpusSource, Window
from jobs.refresh import LastRefresh, last_refresh
from jobs.session import launched_conf, session_conf, unapplied_driver_settings
from jobs.show import console
from lake import delta_io
from lake.registry import CHALLENGER, CHAMPION, Registry, RegistryError, challenger_is_champion, registry_exists
from rollout.models import NO_CHALLENGER_WITHOUT_REGISTRY
from signals.contracts import EMBEDDINGS, KEYFRAMES, LABELS

# The settings that say where a job runs and what each executor and task gets.
RESOURCES = re.compile(r"^spark\.(master|cores\.max|pyspark\.python|submit\.pyFiles|archives|dynamicAllocation\.enabled|"
                       r"(driver|executor|task)\.(cores|cpus|memory|memoryOverhead|instances|resource\..+))$")


def model_versions(settings: Settings, names: list[str], challenger: bool = False) -> dict[str, str]:
    """signal -> the model version a run would compute, looked up without registering anything; a
    UsageError where a shadow run would refuse (no signal has a challenger: rollout.models.resolve_versions)."""
    uri = settings.registry_uri if settings.registry.enabled else None
    if challenger and uri is None:
        raise UsageError(NO_CHALLENGER_WITHOUT_REGISTRY)
    registry = Registry(uri) if uri and registry_exists(uri) else None
    versions = {}
    for name in names:
        conf = settings.signals[name]
        ref = CHALLENGER if challenger else conf.model.version or CHAMPION
        if challenger and uri:  # a shadow run computes the signals whose challenger is not their champion, only them
            aliases = registry.aliases_if_registered(name) if registry else {}
            if CHALLENGER not in aliases:
                versions[name] = "none: no challenger version, not computed"
            elif challenger_is_champion(aliases, conf.model.version):
                versions[name] = f"none: its challenger is its champion (version {aliases[CHALLENGER]}), not computed"
            else:
                versions[name] = f"{aliases[CHALLENGER]} ({CHALLENGER})"
        elif conf.model.version:
            versions[name] = f"{conf.model.version} (pinned)"
        elif registry is None:
            versions[name] = f"{ref}: not registered yet (a run registers the configured weights as the champion)"
        else:
            try:
                versions[name] = f"{registry.resolve(name, ref).version} ({ref})"
            except RegistryError:
                versions[name] = f"{ref}: not registered yet (a run registers the configured weights as the champion)"
    if challenger and uri and all(v.startswith("none:") for v in versions.values()):
        raise UsageError(f"no enabled signal has a {CHALLENGER!r} version other than its champion in the registry; register one first")
    return versions


def corpus_partitions(corpus: CorpusSource, window: Window) -> tuple[int | None, str]:
    """The corpus version (Delta), and its partitions in the window: days, files and rows."""
    version = corpus.version()
    day = corpus.day_partition()
    if version is None or day is None:
        return version, f"all of {corpus.location} ({corpus.settings.format}, not partitioned by day: nothing to prune)"
    days: dict[str, list[int]] = defaultdict(list)
    for f in delta_io.live_files(corpus.location, version):
        value = f.partition_values[day]
        if value is not None and window.contains(str(value)):  # a DATE partition's values are dates
            days[str(value)].append(f.num_records)
    if not days:
        return version, "none: the window holds no corpus items (a run would commit nothing)"
    return version, (f"{len(days)} days ({min(days)}..{max(days)}), {sum(len(v) for v in days.values())} files, "
                     f"{sum(sum(v) for v in days.values())} rows")


def plan_lines(settings: Settings, args: argparse.Namespace) -> list[str]:
    """The plan of the command line's job, one line per fact."""
    window = Window(getattr(args, "start", None), getattr(args, "end", None))
    corpus = CorpusSource.of(settings)
    mapping_checked = corpus.check_schema()  # a mapping a run would refuse is refused here too
    version, partitions = corpus_partitions(corpus, window)
    lines = [f"{args.command} (dry run: nothing is computed, registered or committed); lakehouse {settings.lakehouse_root}"]
    if args.command == "backfill":
        lines.append(f"window: {window.start or 'beginning'}..{window.end or 'end'}"
                     + (f", challenger versions on {args.slice_pct}% of items" if args.challenger else ""))
    lines.append(f"corpus: version {version}; partitions read: {partitions}"
                 + ("" if mapping_checked else "; its columns are checked against corpus.columns when a run starts (a catalog table)"))
    if corpus.settings.filter:
        lines.append(filter_line(corpus, mapping_checked))
    names = [settings.dedup.embedding_signal] if args.command == "dedup" else list(settings.enabled_signals)
    role = "embeddings for dedup" if args.command == "dedup" else "signals"
    for name, model in model_versions(settings, names, getattr(args, "challenger", False)).items():
        lines.append(f"{role}: {name} ({settings.signals[name].model.name}) at model version {model}")
    if args.command == "refresh":
        # the run plans the keyframes table where the corpus maps videos or the table exists (jobs.refresh.run_refresh)
        keyframes = [KEYFRAMES] if corpus.maps_video() or DeltaTable.is_deltatable(settings.table_root(KEYFRAMES.name)) else []
        for contract in (EMBEDDINGS, LABELS, *keyframes):
            root = settings.table_root(contract.name)
            lines.append(f"{contract.name}: {refresh_scope(last_refresh(root) if DeltaTable.is_deltatable(root) else None, args.full)}")
    launched = launched_conf()
    spark = session_conf(settings.spark, launched)
    lines.append("spark: " + ", ".join([f"{k}={v}" for k, v in sorted(spark.items()) if RESOURCES.match(k)]
                                       + ([] if spark.get("spark.master") else ["no master (spark-submit --master sets it)"])))
    lines += [f"spark: {key}={value} from the profile does not apply under spark-submit (--conf {key}={value} there)"
              for key, value in unapplied_driver_settings(settings.spark, launched).items()]
    return lines


def filter_line(corpus: CorpusSource, schema_read: bool) -> str:
    """What the dry run can say of `corpus.filter`: DataFusion evaluates it on the corpus's columns
    (no rows), which catches a misspelt column; a run judges it with Spark, whose SQL may read
    what DataFusion's does not, so a problem is shown, not refused."""
    if not schema_read:
        return f"corpus filter: {corpus.settings.filter} (a catalog table: checked when a run starts)"
    problem = corpus.filter_problem()
    if problem:
        return f"corpus filter: WARNING {problem}; a run judges it with Spark when it starts, and refuses it if Spark cannot read it either"
    return f"corpus filter: {corpus.settings.filter} (it reads the corpus's columns)"


def refresh_scope(last: LastRefresh | None, full: bool) -> str:
    """What a refresh of a table will compare, as `jobs.refresh.plan_scope` decides it from the table's history."""
    if full:
        return "compares the whole corpus (--full)"
    if last is None:
        return "no refresh recorded: compares the whole corpus"
    refreshed = f"last refreshed to corpus version {last.corpus_version} for {last.signature}"
    if None in last.read_since:
        return f"{refreshed}, then rows committed with no corpus version recorded: compares the whole corpus"
    later = f", then rows committed from corpus versions {sorted(set(last.read_since))}" if last.read_since else ""
    return f"{refreshed}{later}: compares the corpus files changed since, if the signals, versions and corpus mapping are the same, else the whole corpus"


def print_plan(settings: Settings, args: argparse.Namespace) -> None:
    """Print the plan of the command line's job."""
    for line in plan_lines(settings, args):
        console.print(line, highlight=False, soft_wrap=True)
