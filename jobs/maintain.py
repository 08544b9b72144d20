"""The maintain job: upkeep of the lakehouse's tables (lake/upkeep.py), safe beside the other jobs.

    content-signals maintain [--tables embeddings labels ...] [--dry-run]

For each table: the small files of crowded partitions compacted (one commit per table), a vacuum
that keeps every version still named and every version current within
`maintain.min_retention_hours`, and a checkpoint of the log once it has grown (`maintain:` in
the profile). The versions named: the corpus version each signal table's (and the keyframes
table's) last refresh compared (the next refresh reads the files of that version to find what
changed), the corpus version pinned in the profile
(`corpus.version`), the embeddings version each index was built or last updated from (its next
`index --update` reads the files changed since), the versions each registered head's champion
and challenger (the profile's heads or not), and each head version the profile pins, were trained and
evaluated on (their lineage), and those `maintain.keep_versions`
lists (any other reader's pin).

The corpus is maintained only when it is the lakehouse's own sample corpus (a corpus someone
else owns is theirs to maintain), and is never compacted: the incremental refresh finds changed
items by the corpus files added or removed since its last refresh, and a compaction would look
like every compacted file changed (docs/design.md, Table upkeep).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import deltalake
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from mlflow.exceptions import MlflowException

from conf.settings import Settings, UsageError
from jobs.engine import Run, RunResult, Tracked, recorded
from jobs.refresh import last_refresh
from lake.ledger import NOTHING_TO_DO, SUCCEEDED
from lake.registry import Registry, registry_exists
from lake.upkeep import UPKEEP_JOB, Upkeep, UpkeepPolicy, maintain_table
from retrieval import index_store
from signals.base import ModelRef
from signals.contracts import ALERTS, CORPUS, DUPLICATES, EMBEDDINGS, HUMAN_LABELS, KEYFRAMES, LABELS, RUNS, SIGNAL_STATS, WEAK_LABELS
from training.gate import is_head

JOB = UPKEEP_JOB
TABLES = {c.name: c for c in (EMBEDDINGS, LABELS, KEYFRAMES, DUPLICATES, RUNS, SIGNAL_STATS, ALERTS, HUMAN_LABELS, WEAK_LABELS, CORPUS)}
REFRESHED_TABLES = (EMBEDDINGS, LABELS, KEYFRAMES)  # tables whose refresh commits record the corpus version they compared
LINEAGE_PARAMS = {"embeddings_version": EMBEDDINGS, "duplicates_version": DUPLICATES, "human_labels_version": HUMAN_LABELS,
                  "weak_labels_version": WEAK_LABELS, "labels_table_version": LABELS, "corpus_version": CORPUS}  # a head's MLflow params


@dataclass(frozen=True)
class MaintainResult:
    """What one maintain run did (or, dry, would do), table by table."""

    run_id: str
    dry_run: bool
    tables: list[Upkeep]
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why it was left alone
    unknown: list[str] = field(default_factory=list)  # what names versions no one can know any more (lineage_versions, damaged index manifests)


class UpkeepFailed(RuntimeError):
    """Upkeep of some tables failed (a damaged log entry, say): raised once the other tables' upkeep
    is done, since one table's damage is no reason to leave the rest of the lakehouse to grow."""

    def __init__(self, failed: dict[str, Exception], done: list[Upkeep]) -> None:
        self.failed, self.done = failed, done
        reasons = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failed.items())
        super().__init__(f"upkeep of {', '.join(failed)} failed ({reasons}); "
                         + ("; ".join(map(describe, done)) if done else "no other table's upkeep was done"))


def policy_of(settings: Settings) -> UpkeepPolicy:
    conf = settings.maintain
    return UpkeepPolicy(conf.checkpoint_every, conf.small_file_bytes, conf.min_small_files, conf.target_file_bytes,
                        timedelta(hours=conf.min_retention_hours))


def owns_corpus(settings: Settings) -> bool:
    """Whether the corpus is the lakehouse's own sample corpus (a Delta table at `<lakehouse>/corpus`)."""
    own = settings.table_root(CORPUS.name)
    return settings.corpus.format == "delta" and (settings.corpus.path or own).rstrip("/") == own


def named_versions(settings: Settings, unknown: list[str] | None = None) -> dict[str, set[int]]:
    """table -> the versions of it that something still names, which a vacuum must keep readable;
    what names versions no one can know any more is said in `unknown` (lineage_versions, an index manifest that cannot be read,
    a refreshed table whose log cannot be read)."""
    named: dict[str, set[int]] = defaultdict(set)
    for contract in REFRESHED_TABLES:
        root = settings.table_root(contract.name)
        try:
            last = last_refresh(root) if DeltaTable.is_deltatable(root) else None
        except DeltaError as damaged:  # that table's own upkeep fails on it, explained: not a reason to stop the others'
            if unknown is not None:
                unknown.append(f"the {contract.name} table's last refresh cannot be read ({damaged}): the corpus versions it compared "
                               "are not known and not kept (its next refresh, once the table is healed, may compare the whole corpus)")
            continue
        if last is not None:
            named[CORPUS.name].update(last.corpus_versions)
    if settings.corpus.version is not None:
        named[CORPUS.name].add(settings.corpus.version)
    for signal in index_store.indexed_signals(settings.lakehouse_root):
        try:
            named[EMBEDDINGS.name].add(index_store.read_manifest(settings.lakehouse_root, signal).table_version)
        except UsageError as damaged:  # its version cannot be known, and it must be built again anyway: not a reason to stop upkeep
            if unknown is not None:
                unknown.append(f"the index of {signal} names no version: {damaged}")
    for table, versions in lineage_versions(settings, unknown).items():
        named[table].update(versions)
    for table, versions in settings.maintain.keep_versions.items():
        named[table].update(versions)
    return named


def lineage_versions(settings: Settings, unknown: list[str] | None = None) -> dict[str, set[int]]:
    """table -> the versions the champion and challenger of each head registered in the lakehouse's
    registry (the profile's or not), and the head versions the profile pins (its jobs run them in the
    champion's place), were trained and evaluated on (their MLflow run's lineage, training/train.py),
    so that each can be trained again or audited; none where no registry was ever made. A version
    whose training run is gone from MLflow (`mlflow gc`), or a pinned one never registered, names
    nothing: said in `unknown`, rather than stopping every upkeep."""
    named: dict[str, set[int]] = defaultdict(set)
    if not registry_exists(settings.registry_uri):
        return named
    registry = Registry(settings.registry_uri)
    heads = {signal: set(aliases.values()) for signal, aliases in registry.every_alias().items() if is_head(signal)}  # the profile's or not
    for signal, conf in settings.signals.items():
        if is_head(signal) and conf.model.version is not None:
            heads.setdefault(signal, set()).add(str(conf.model.version))
    for signal, versions in heads.items():
        for version in versions:
            run_id = None
            try:
                run_id = registry.client.get_model_version(signal, version).tags.get("mlflow_run_id")
                params = registry.client.get_run(run_id).data.params if run_id else {}
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # an unreachable registry stops upkeep: nothing it names is known
                    raise
                if unknown is not None:
                    gone = f"its training run {run_id} is gone from MLflow" if run_id else "it is pinned but not registered"
                    unknown.append(f"{signal} version {version}: {gone}, so the table versions it was trained on are not known and not kept")
                continue
            for param, contract in LINEAGE_PARAMS.items():
                if params.get(param, "").isdigit():
                    named[contract.name].add(int(params[param]))
    return named


def _tables(settings: Settings, asked: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """(the tables to maintain, those left alone and why); a UsageError for a table maintain cannot take."""
    unknown = sorted(set(asked or ()) - TABLES.keys())
    if unknown or not set(settings.maintain.keep_versions) <= TABLES.keys():
        bad = unknown or sorted(set(settings.maintain.keep_versions) - TABLES.keys())
        raise UsageError(f"no table {', '.join(bad)} to maintain; the tables: {', '.join(TABLES)}")
    if asked and CORPUS.name in asked and not owns_corpus(settings):
        raise UsageError(f"the corpus at {settings.corpus.path or settings.corpus.table} is not the lakehouse's sample corpus: "
                         "its owner maintains it")
    wanted = list(dict.fromkeys(asked)) if asked else [n for n in TABLES if n != CORPUS.name or owns_corpus(settings)]
    present = [n for n in wanted if DeltaTable.is_deltatable(settings.table_root(n))]
    skipped = {n: "no such table in the lakehouse yet" for n in wanted if n not in present}
    if not present:
        raise UsageError(f"none of the tables {', '.join(wanted)} is in the lakehouse {settings.lakehouse_root}")
    for name, versions in settings.maintain.keep_versions.items():
        latest = DeltaTable(settings.table_root(name)).version() if DeltaTable.is_deltatable(settings.table_root(name)) else -1
        if versions and max(versions) > latest:
            raise UsageError(f"maintain.keep_versions names version {max(versions)} of {name}, whose latest version is "
                             f"{latest if latest >= 0 else 'none (no such table)'}: a version must exist to be kept")
    return present, skipped


def run_maintain(settings: Settings, tables: Sequence[str] | None = None, dry_run: bool = False) -> MaintainResult:
    """Maintain the lakehouse's tables (all of them by default), recorded in the run ledger;
    `dry_run` says what would be done and changes nothing."""
    present, skipped = _tables(settings, tables)
    unknown: list[str] = []
    run, policy, keep = Run.begin(JOB), policy_of(settings), named_versions(settings, unknown)

    def upkeep(name: str) -> Upkeep:
        return maintain_table(settings.table_root(name), TABLES[name], policy, keep.get(name, set()), run.app_id, f"part-{run.run_id}",
                              {"job": JOB, "run_id": run.run_id}, compaction=name != CORPUS.name, dry_run=dry_run)

    if dry_run:
        return MaintainResult(run.run_id, True, [upkeep(name) for name in present], skipped, unknown)
    entries = [Tracked(name, ModelRef("delta-rs", deltalake.__version__), name) for name in present]
    with recorded(settings, run, entries) as finish:
        done, failed = [], {}
        for name in present:
            try:
                done.append(upkeep(name))
            except Exception as exc:  # noqa: BLE001 - raised below, after the other tables' upkeep
                failed[name] = exc
        worked = any(u.compaction_version is not None or u.relayout_version is not None or u.vacuumed or u.log_expired
                     or u.checkpoint is not None for u in done)
        status, versions = SUCCEEDED if worked else NOTHING_TO_DO, {u.table: u.version for u in done}
        if failed:
            error = UpkeepFailed(failed, done)
            if done:  # their upkeep was done: recorded as it is, not as the failure of the others' (which the message says)
                finish(RunResult(run.run_id, status, versions, message=f"done before the run failed ({type(error).__name__}: {error})"[:2000],
                                 closes=tuple(versions)))
            raise error from next(iter(failed.values()))
        finish(RunResult(run.run_id, status, versions, message="; ".join([*(describe(u) for u in done), *unknown])))
    return MaintainResult(run.run_id, False, done, skipped, unknown)


def describe(upkeep: Upkeep) -> str:
    """One line of what upkeep did to a table (the ledger's message)."""
    parts = [f"{upkeep.table}: files {upkeep.files_before} -> {upkeep.files_after}",
             f"{upkeep.files_compacted} small files in {upkeep.partitions_compacted} partitions compacted",
             f"{upkeep.vacuumed} files vacuumed (retention {upkeep.retention_hours}h, versions kept {list(upkeep.kept_versions)})",
             f"checkpoint at version {upkeep.checkpoint}" if upkeep.checkpoint is not None else "no checkpoint due",
             *upkeep.notes]
    return ", ".join(parts)
