"""What the command line prints: a run's outcome, the lakehouse's tables, an evaluation."""
from __future__ import annotations

import json
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conf.settings import Settings, UsageError
from jobs.engine import RunResult
from jobs.maintain import MaintainResult
from lake.lakehouse import Lakehouse
from lake.registry import CHALLENGER
from monitoring.monitor import MonitorResult
from retrieval.index_store import Manifest
from rollout.evaluate import REPORT
from signals.contracts import DUPLICATES, EMBEDDINGS, KEYFRAMES, LABELS, RUNS
from training.evaluate import scored_said, without_row_said
from training.gold import NO_ITEM_IN_COMMON, Agreement
from training.heads import unvalidated_said
from training.heads_evaluation import undefined_said
from training.train import TrainedVersion

SHOWN_REFERENCES = 20  # signal days whose reference `monitor` prints, the rest counted
KAPPA_PAIRS_NAMED = 5  # pairs of annotators without a shared item named by `labels gold`, the rest counted
KEYFRAME_COLUMNS = ["content_id", "signal", "keyframe_index", "shot_index", "start_s", "end_s", "time_s", "status", "error"]  # what show prints of them
console = Console(width=None if sys.stdout.isatty() else 160)  # logs and pipes keep whole paths


def print_result(result: RunResult, settings: Settings) -> None:
    """A run's outcome: what it committed, its rows per signal, and its message (the corpus rows it skipped, what a
    refresh computed and dropped), which the runs ledger keeps too."""
    if result.status == "skipped":
        committed = ", ".join(f"{name} {_version_said(v)}" for name, v in result.table_versions.items())
        console.print(f"run {result.run_id} was already committed ({committed}): nothing to do", markup=False)
        if result.message:
            console.print(result.message, markup=False, soft_wrap=True)
        return
    if not result.table_versions:
        console.print(f"run {result.run_id}: {result.status} ({result.message}); nothing committed", markup=False)
        return
    committed = ", ".join(f"{settings.table_root(name)} {_version_said(v)}" for name, v in result.table_versions.items())
    if not result.outcomes:
        console.print(f"{result.run_id}: {result.status} -> {committed}", markup=False)
    else:
        table = Table(title=escape(f"{result.run_id} -> {committed}"))  # a run id (--run-id) and paths as text, not Rich markup
        for column in ("signal", "model", "rows computed", "ok", "error"):
            table.add_column(column, justify="left" if column in ("signal", "model") else "right")
        for o in result.outcomes:
            table.add_row(escape(o.signal), escape(f"{o.model.name}@{o.model.version}"), str(o.rows_in), str(o.rows_ok), str(o.rows_error))
        console.print(table)
        for use in result.executors:  # which executors ran what: one line per (signal, executor process)
            console.print(use.describe(), soft_wrap=True)
    if result.message:
        console.print(result.message, markup=False, soft_wrap=True)


def _version_said(version: int | None) -> str:
    """A committed table version as the run's output shows it; None (its log entry cleaned up) as unknown, not "None"."""
    return "version unknown" if version is None else f"version {version}"


def print_upkeep(result: MaintainResult) -> None:
    """What a maintain run did (or, dry, would do) to each table."""
    title = f"maintain {result.run_id}" + (" (dry run: nothing changed)" if result.dry_run else "")
    table = Table(title=title)
    for column in ("table", "files before", "files after", "compacted (files/partitions)", "checkpoint", "vacuumed", "retention", "versions kept",
                   "log files expired"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for u in result.tables:
        table.add_row(u.table, str(u.files_before), str(u.files_after), f"{u.files_compacted}/{u.partitions_compacted}",
                      "-" if u.checkpoint is None else f"version {u.checkpoint}", str(u.vacuumed), f"{u.retention_hours}h",
                      ", ".join(map(str, u.kept_versions)) or "-", str(u.log_expired))
    console.print(table)
    for u in result.tables:
        for note in u.notes:
            console.print(f"{u.table}: {note}", soft_wrap=True)
    for name, why in result.skipped.items():
        console.print(f"{name}: left alone ({why})")
    for what in result.unknown:
        console.print(what, soft_wrap=True)


def show(settings: Settings) -> None:
    """Print every table of the lakehouse, and what the embeddings and the last runs hold, each table read at the one
    version printed (a refresh committing meanwhile shows in the next show, not half in this one)."""
    lakehouse = Lakehouse.of(settings)
    tables = lakehouse.tables()
    if not tables:
        raise UsageError(f"no Delta table in {lakehouse.root}: is that the lakehouse (--profile, --set lakehouse=...)? "
                         "content-signals make-corpus or demo makes one")
    overview = Table(title=escape(f"lakehouse {lakehouse.root}"))  # what the tables hold (another writer's too) as text, not Rich markup
    for column in ("table", "version", "rows", "path"):
        overview.add_column(column)
    versions: dict[str, int] = {}  # each table read at the one version printed, whatever another writer commits meanwhile
    for name in tables:
        table = DeltaTable(lakehouse.path(name))
        versions[name] = table.version()
        overview.add_row(escape(name), str(versions[name]), str(table.to_pyarrow_dataset().count_rows()), escape(lakehouse.path(name)))
    console.print(overview)
    if EMBEDDINGS.name in tables:
        rows = lakehouse.arrow(EMBEDDINGS.name, versions[EMBEDDINGS.name], columns=["signal", "model_version", "status", "dim", "error"])  # no vector
        counts = rows.group_by(["signal", "model_version", "status", "dim"]).aggregate([([], "count_all")])
        summary = Table(title="embeddings by signal, model version and status")
        for column in counts.column_names:
            summary.add_column(column)
        for row in counts.sort_by([("signal", "ascending"), ("status", "ascending")]).to_pylist():
            summary.add_row(*[escape(str(v)) for v in row.values()])
        console.print(summary)
        errors = rows.filter(pc.equal(rows["status"], "error"))
        reasons = pa.table({"reason": pc.utf8_slice_codeunits(errors["error"], 0, 60)}).group_by("reason").aggregate([([], "count_all")])
        console.print("error reasons:", json.dumps(dict(zip(reasons["reason"].to_pylist(), reasons["count_all"].to_pylist())), indent=1),
                      markup=False)
    if LABELS.name in tables:
        labels = lakehouse.pandas(LABELS.name, versions[LABELS.name], filters=pc.field("status") == "ok",
                                  columns=["content_id", "signal", "label", "model_version", "decision"])
        champions, registered = lakehouse.champions(LABELS.name, versions[LABELS.name]), lakehouse.registered()  # one never registered has one version
        read = [champions[s] == v if s in champions else s not in registered for s, v in zip(labels["signal"], labels["model_version"])]
        labels = labels.loc[read]  # rows: [] keeps the columns
        decided = labels[labels.decision.eq(True)].groupby(["signal", "label"]).size().sort_values(ascending=False)
        console.print(f"labels: {labels.content_id.nunique()} items labelled; items per positive decision (top 15):")
        console.print(decided.head(15).to_string(), markup=False)
    if DUPLICATES.name in tables:
        groups = lakehouse.pandas(DUPLICATES.name, versions[DUPLICATES.name], columns=["group_id"]).groupby("group_id").size()
        console.print(f"duplicates: {len(groups)} groups; {int((groups > 1).sum())} with copies, "
                      f"{int(groups[groups > 1].sum() - (groups > 1).sum())} items to drop if consumers keep one per group")
    if KEYFRAMES.name in tables:
        keyframes = lakehouse.pandas(KEYFRAMES.name, versions[KEYFRAMES.name], filters=pc.field("label").is_null(),  # the embedding rows: one per keyframe
                                     columns=KEYFRAME_COLUMNS)
        ok = keyframes[keyframes.status == "ok"][["content_id", "keyframe_index"]].drop_duplicates()
        errors = keyframes.status.eq("error").groupby(keyframes.content_id).agg(["all", "any"])  # a video's rows: all, some in error
        console.print(f"keyframes: {len(errors)} videos, {len(ok)} keyframes, {int(errors['all'].sum())} videos in error, "
                      f"{int((errors['any'] & ~errors['all']).sum())} with some rows in error; the first rows:")
        shown = keyframes.sort_values(["content_id", "signal", "keyframe_index"]).head(12)
        console.print(shown[KEYFRAME_COLUMNS].to_string(index=False),
                      markup=False)
    if RUNS.name in tables:
        whole = {pa.int64(): pd.Int64Dtype()}.get  # an alias move's row has no counts and no commit: not floats for every row beside it
        runs = lakehouse.arrow(RUNS.name, versions[RUNS.name]).to_pandas(types_mapper=whole).sort_values("finished_at").tail(6)
        console.print("latest runs:")
        shown = runs[["run_id", "signal", "rows_in", "rows_ok", "rows_error", "status", "table_version", "duration_s"]]
        console.print(shown.astype(object).where(shown.notna(), "-").to_string(index=False), markup=False)


def print_evaluation(result: dict) -> None:
    table = Table(title=f"evaluation against the corpus truth -> {REPORT}")
    for column in ("label", "precision", "recall", "roc_auc", "n"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, m in result["labels"].items():
        table.add_row(label, *[("-" if m.get(k) is None else f"{m[k]:.3f}") for k in ("precision", "recall", "roc_auc")], str(m["n"]))
    console.print(table)
    for signal, r in result.get("retrieval", {}).items():
        copies = r.get("copies", {})
        found = "-" if copies.get("mean_share") is None else f"{copies['mean_share']:.3f}"
        console.print(f"retrieval {signal} ({r['items']} items): recall@{r['k']} of the approximate index vs exact "
                      f"{r['recall_at_k_approximate']:.3f} ({r['approximate']}); copies among the {r['k']} nearest "
                      f"(mean share, {copies.get('items_with_copies', 0)} items with copies) {found} [{r['index_kind']} index]")
    shots = result.get("video_shots")
    if shots:
        console.print(f"video shots: precision {shots['precision']:.3f}, recall {shots['recall']:.3f} of {shots['boundaries']} boundaries "
                      f"within {shots['tolerance_s']} s ({shots['videos']} sample videos)")
    monitoring = result.get("monitoring")
    if monitoring:
        console.print(f"monitoring: {len(monitoring['false_alerts'])} alerts on {monitoring['normal_days']} ordinary days, "
                      f"drift judged on {monitoring.get('drift_judged_days', '?')} of them (the first lack a reference) "
                      f"(monitor {monitoring['cost']['monitor_s']}s after a {monitoring['cost']['backfill_s']}s backfill)")
        for name, s in monitoring["scenarios"].items():
            attributed = {None: "no drift to attribute", True: f"drift put down to the {s['expected_cause']}"}.get(
                s["attributed_right"], f"[bold red]drift put down to {', '.join(s['drift_causes'])}, not the {s['expected_cause']}[/]")
            console.print(f"  {name} ({s['day']}): expected {s['expected']}: {'caught' if s['caught'] else '[bold red]MISSED[/]'}; "
                          f"{attributed}; fired: {', '.join(s['fired']) or 'nothing'}", soft_wrap=True)
    if result.get("heads"):
        print_heads(result["heads"])


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _scored_auc(scorer: str, figures: dict, items: int) -> str:
    """A scorer's ROC-AUC, saying how many items it is on where the scorer left some of the `items` out
    (`scored_items`; a report written before kept no count)."""
    scored = figures.get("scored_items", {}).get(scorer, items)
    return _auc(figures["roc_auc"][scorer]) + ("" if scored == items else f" (on its {scored} scored items)")


def _undefined(scorer: str, figures: dict) -> str:
    """Why a scorer has no ROC-AUC in `figures` (`roc_auc_not_defined`), in parentheses; nothing where it has one
    (or a report written before kept no reason)."""
    why = figures.get("roc_auc_not_defined", {}).get(scorer)
    return "" if why is None else f" ({why})"


def _compared(compared: dict) -> str:
    """The scorers' ROC-AUCs on the items every one of them scored, or why they have none (one reason: they are
    on the same items; a report written before kept none)."""
    whys = sorted(set(compared.get("roc_auc_not_defined", {}).values()))
    return f"no ROC-AUC ({'; '.join(whys)})" if whys else ", ".join(f"{s} {_auc(auc)}" for s, auc in compared["roc_auc"].items())


def _margin(baseline: str, margin: dict | None) -> str:
    if margin is None:
        return f"{baseline} -"
    return f"{baseline} {margin['difference']:+.3f} [{margin['ci95_low']:+.3f}, {margin['ci95_high']:+.3f}]"


def print_heads(heads: dict) -> None:
    """The heads section: ROC-AUC of every scorer per task on the same held-out gold, the crossover, the loader."""
    scorers = list(next(iter(heads["tasks"].values()))["roc_auc"])
    table = Table(title="heads: ROC-AUC on held-out gold" + ("" if heads["target_met"] else " [bold red](target not met)[/]"))
    for column in ("task", "items", *scorers, "gold labels to match the weak head"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for task, r in heads["tasks"].items():
        to_match = r["crossover"]["gold_labels_to_match_weak_head"]
        curve = ", ".join(f"{p['gold_labels']}: {_auc(p['roc_auc'])}" for p in r["crossover"]["curve"])
        unmatched = "-" if r["roc_auc"]["weak_head"] is None else f"not within {r['crossover']['gold_labels_outside_test']}"  # nothing to match
        table.add_row(task, str(r["held_out_items"]), *(_scored_auc(s, r, r["held_out_items"]) for s in scorers),
                      f"{to_match if to_match is not None else unmatched} ({curve})")
    console.print(table)
    for task, r in heads["tasks"].items():  # as train says it; a report written before the count has none
        for note in without_row_said({"without_row": r.get("held_out_without_row", 0)}, r["embedding"]):
            console.print(f"[yellow]note:[/] {task}: {note}", soft_wrap=True)
        for note in undefined_said(r):
            console.print(f"[yellow]note:[/] {task}: {note}", soft_wrap=True)
    console.print(f"the weak-label head beats majority vote and the rule on: {', '.join(heads['weak_head_beats_baselines_on']) or 'no task'}")
    for task, r in heads["tasks"].items():
        cross = r["cross_fitted"]
        truth = cross["against_truth"]
        console.print(f"{task}, cross-fitted over {cross['folds']} folds ({cross['items']} gold items, {cross['positives']} positive): "
                      + ", ".join(f"{s} {_scored_auc(s, cross, cross['items'])}{_undefined(s, cross)}" for s in cross["roc_auc"])
                      + f"; against the corpus's truth (gold agrees on {truth['gold_agrees']:.1%}): "
                      + ", ".join(f"{s} {_auc(auc)}{_undefined(s, truth)}" for s, auc in truth["roc_auc"].items()))
        for note in without_row_said(cross, r["embedding"]):
            console.print(f"[yellow]note:[/] {task}, cross-fitted: {note}", soft_wrap=True)
        compared = cross.get("compared")  # a report written before the comparison stated its items has none
        on = "" if compared is None else f" on the {compared['items']} items every scorer scored ({_compared(compared)})"
        console.print(f"  the weak-label head minus each baseline, cross-fitted{on} (95% interval): "
                      + ", ".join(_margin(b, m) for b, m in cross["weak_head_margin"].items())
                      + "; against the truth: " + ", ".join(_margin(b, m) for b, m in truth["weak_head_margin"].items()))
    crossed = heads["cross_fitted"]
    console.print(f"cross-fitted, the weak-label head beats both on: {', '.join(crossed['weak_head_beats_baselines_on']) or 'no task'}"
                  + ("" if crossed["target_met"] else " (target not met)")
                  + f"; beyond the intervals on: {', '.join(crossed['beyond_noise_on']) or 'no task'}"
                  + f" (against the truth: {', '.join(crossed['beyond_noise_against_truth_on']) or 'no task'})")
    for scale, r in heads["loader"]["scales"].items():
        console.print(f"loader at {scale} ({r['table_rows']} rows, {r['table_mb']} MB of vectors): "
                      + "; ".join(f"{way} {r[way]['rows_per_s']} rows/s, peak {r[way]['peak_mb']} MB" for way in ("loader", "pandas_first")))


def print_neighbours(manifest: Manifest, content_id: str, found: list[tuple[str, float]]) -> None:
    """An item's nearest neighbours, nearest first, under what the index was built from."""
    console.print(f"{content_id}: nearest in the {manifest.kind['name']} index of {manifest.signal} (model version "
                  f"{manifest.model_version}, embeddings version {manifest.table_version}, {manifest.items} items)")
    table = Table()
    for column in ("rank", "content_id", "cosine"):
        table.add_column(column, justify="left" if column == "content_id" else "right")
    for rank, (other, score) in enumerate(found, 1):
        table.add_row(str(rank), other, f"{score:.4f}")
    console.print(table)


def print_monitor(result: MonitorResult, every: bool = False) -> None:
    """A monitored run: its alerts (in red; `every`: each verdict), what the rest came to, and what each
    signal's day was compared with; an on-call reads the few alerts, not hundreds of ok rows."""
    title = f"monitor {result.run_id}: {len(result.fired)} alert(s)" + (
        f" -> alerts version {result.alerts_version}" if result.alerts_version is not None else "")
    shown = [(j, v) for j in result.judged for v in j.verdicts if every or v.fired]
    if shown:
        table = Table(title=title)
        for column in ("signal", "version", "day", "rule", "label", "verdict", "cause", "what"):
            table.add_column(column)
        for j, v in shown:
            verdict = "[bold red]ALERT[/]" if v.fired else "ok"
            table.add_row(*map(escape, (j.signal, j.model_version, j.ds, v.rule, v.label or "")), verdict, v.cause or "", escape(v.message))
        console.print(table)  # what the tables hold (error reasons, labels: another writer's too) as text, not Rich markup
    else:
        console.print(title)
    quiet = sum(not v.fired for j in result.judged for v in j.verdicts)
    if quiet and not every:
        console.print(f"{quiet} more verdicts ok or not judged, on {len(result.judged)} signal days: "
                      "`content-signals monitor --all` prints them, the alerts table holds them")
    references = sorted({(j.signal, j.ds, j.reference) for j in result.judged})
    for signal, day, reference in references[:SHOWN_REFERENCES]:
        console.print(escape(f"{signal} {day} compared with {reference}"), soft_wrap=True)
    if len(references) > SHOWN_REFERENCES:
        console.print(f"and {len(references) - SHOWN_REFERENCES} more signal days (the alerts table names each one's reference)")


def print_agreement(found: Agreement) -> None:
    """Annotators' reliability (Dawid-Skene), pairwise kappa and alpha of a task's human labels."""
    votes, estimate = found.votes, found.estimate
    alpha = f"{found.alpha:.3f}" if found.alpha_missing() is None else f"not a number ({found.alpha_missing()})"
    console.print(f"{found.task}: {len(votes.content_ids)} items, {len(votes.annotators)} annotators; "
                  f"Krippendorff's alpha {alpha}; majority and Dawid-Skene differ on {found.majority_disagrees} items; "
                  f"positive share {estimate.prior[1]:.3f}")
    table = Table("annotator", "items", "P(yes | no)", "P(no | yes)")
    for j, name in enumerate(votes.annotators):
        rates = (f"{estimate.confusion[j, 0, 1]:.3f}", f"{estimate.confusion[j, 1, 0]:.3f}") if found.estimated[j] else ("-", "-")
        table.add_row(escape(name), str(int((votes.matrix[:, j] >= 0).sum())), *rates)
    console.print(table)
    if not found.estimated.all():
        console.print("-: an annotator who shares no item with another cannot be weighed (their items keep their own votes)")
    apart = []  # pairs who judged no item in common: a crowd has thousands, so they are counted, not listed
    for (a, b), kappa in found.kappa.items():
        why = found.kappa_missing(a, b)
        if why == NO_ITEM_IN_COMMON:
            apart.append(f"{a} / {b}")
            continue
        console.print(f"Cohen's kappa {escape(a)} / {escape(b)}: " + (f"{kappa:.3f}" if why is None else f"not a number ({why})"))  # names as written, not markup
    if apart:
        shown = ", ".join(apart[:KAPPA_PAIRS_NAMED]) + (", ..." if len(apart) > KAPPA_PAIRS_NAMED else "")
        console.print(escape(f"Cohen's kappa not a number for {len(apart)} pairs of annotators who judged no item in common ({shown})"))


def print_weak(report: dict) -> None:
    """Each labeling function's coverage, overlap, conflict and accuracy, and the label issues."""
    table = Table("labeling function", "coverage", "overlap", "conflict", "accuracy (gold items)")
    for name, lf in report["labeling_functions"].items():
        accuracy = "-" if lf["accuracy"] is None else f"{lf['accuracy']:.3f} ({lf['gold_items']})"
        table.add_row(name, f"{lf['coverage']:.3f}", f"{lf['overlap']:.3f}", f"{lf['conflict']:.3f}", accuracy)
    console.print(table)
    for key in ("label_model_accuracy", "majority_accuracy"):
        if report[key] is not None:
            console.print(f"{key.replace('_', ' ')} on {report['gold_items']} gold items: {report[key]:.3f}")
    issues = report["label_issues"]
    console.print(f"{len(issues)} gold items likely mislabelled, for re-review"  # content ids as text, not Rich markup
                  + (": " + escape(", ".join(i["content_id"] for i in issues[:20])) if issues else ""))


def alias_move_said(alias: str, version: str, replaced: str | None) -> str:
    """What a move of `alias` to `version` did, in the past: another command may move it again before this is read."""
    if replaced == version:
        return f"was already {alias!r}"
    return f"became {alias!r} " + (f"in place of version {replaced}" if replaced is not None else "(it named no version before)")


def print_trained(trained: TrainedVersion) -> None:
    """A trained head: its registry version, what it was trained on, its held-out metrics per scorer."""
    lineage = trained.snapshot.lineage()
    joined = f" joined with {lineage['joined_embeddings']}" if "joined_embeddings" in lineage else ""
    console.print(f"{trained.model.name}: version {trained.model.version} {alias_move_said(CHALLENGER, trained.model.version, trained.replaced)} "
                  f"(MLflow run {trained.run_id}); "
                  f"trained on {lineage['labels_items']} labelled items, "
                  f"{lineage['embedding_signal']} model version {lineage['embedding_model_version']}{joined} "
                  f"at embeddings version {lineage['embeddings_version']}", soft_wrap=True)
    if ungrouped := trained.snapshot.ungrouped:
        where = "no duplicates table" if trained.snapshot.duplicates_version is None else f"duplicates version {trained.snapshot.duplicates_version}"
        console.print(f"[yellow]note:[/] {ungrouped} of {lineage['labels_items']} labelled items have no row in {where} (newer than the "
                      "last dedup): each is its own group, so a copy of a held-out item may have been trained on; "
                      "content-signals dedup, then train again", soft_wrap=True)
    for note in unvalidated_said(trained.head):
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if trained.evaluation is None:
        console.print("no gold labels: not evaluated, and `promote` will refuse it until it is")
        return
    table = Table(title=scored_said(trained.evaluation))
    columns = list(next(iter(trained.evaluation.metrics.values())))
    for column in ("scorer", *columns):
        table.add_column(column, justify="left" if column == "scorer" else "right")
    for scorer, metrics in trained.evaluation.metrics.items():
        table.add_row(scorer, *("–" if metrics[c] is None else f"{metrics[c]:.4g}" for c in columns))
    console.print(table)
    for note in without_row_said(trained.evaluation.held_out, trained.snapshot.signal):
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    console.print("the head's ROC-AUC minus each baseline's (95% interval, resampled by near-duplicate group): "
                  + ", ".join(_margin(b, m) for b, m in trained.evaluation.leads.items()))
    console.print(f"report: {trained.report}")
