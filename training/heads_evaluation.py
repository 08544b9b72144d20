"""The `heads` section of `make eval` (issue #19's targets): per task, the head trained on weak
labels against the head trained on gold, the label model, the majority vote and the rule on the
held-out gold items (each scorer on those it scored, every comparison of two on the items all of
them scored: `compared`); and the crossover: how many gold labels a gold-only head needs to
match the weak-label head. Built from train_head, held_out_gold and evaluate: nothing here trains
or scores in a way `content-signals train` does not.

The sample corpus is labelled the way a team would start: every item judged by the simulated
annotators (training/annotators.py), imported as human labels, then `labels weak`. The weak labels'
`neighbours` function reads gold (docs/design.md, Labels and weak supervision), so the weak-label
head is not gold-free: the crossover compares it with heads that see only their sample of gold.
Here it reads only the gold outside the test split: a held-out item's own gold, or its copies',
would otherwise reach the label model's and the majority vote's scores of it.

Gold is the annotators' verdict, and wrong on a few items; scorers better than that differ, against
gold, by how they rank those items. So the cross-fitted scorers are also judged against the sample
corpus's own truth, which the annotators judged from, and each difference the target turns on (the
weak-label head against each baseline) comes with a bootstrap interval: a head "beats" a baseline
by chance when the interval holds zero.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from sklearn.metrics import roc_auc_score

from conf.settings import Settings
from lake import delta_io
from lake.corpus import CorpusTable
from sample_corpus.generate import TRUTH_TABLE
from training.annotators import TRUTH, simulate, write_exports
from training.evaluate import common_items, evaluate, lead_is_clear, leads, scorers
from training.gold import gold_labels
from training.heads import train_head
from training.human_labels import import_labels
from training.loader import Snapshot, batches, pin_snapshot, with_folds
from training.loader_benchmark import loader_against_pandas
from training.tasks import TASKS, task_named
from training.train import JOIN, ReadVersions, embedding_signals, held_out_gold, label_frames
from training.weak import run_weak

CROSS_FIT_FOLDS = 5  # folds of near-duplicate groups: every gold item scored by heads that never saw its group
CROSSOVER_START = (25, 50, 100, 200)  # gold labels; then doubling while fewer than the gold items outside the test split
SCORERS = ("weak_head", "gold_head", "label_model", "majority_vote", "rule")
BASELINES = ("majority_vote", "rule")  # what the weak-label head must beat (on at least TASKS_TO_BEAT tasks)
TASKS_TO_BEAT = 2


def label_sample_corpus(settings: Settings, task: str, folder: Path) -> None:
    """Every sample corpus item judged by the simulated annotators, imported as human labels of
    `task` (a file imported before is recognised and not imported again)."""
    truth = delta_io.read_arrow(settings.table_root(TRUTH_TABLE))
    _, csv = write_exports(simulate(truth, task_named(task), settings.sample_corpus.seed), task_named(task), folder)
    import_labels(settings.lakehouse_root, CorpusTable.of(settings), csv, task)


def against_truth(settings: Settings, task: str, frame: pd.DataFrame, scorers: Sequence[str]) -> dict[str, Any]:
    """Each scorer's ROC-AUC on the frame's items it scored against the sample corpus's truth of
    `task` (None where the truth holds one class on those items, as scorer_figures leaves it, with
    the reason in `roc_auc_not_defined`, as there: sklearn gives NaN, which is not JSON, and an older one raised),
    and the share of their gold labels that truth agrees with; the weak-label head's margins
    over the baselines against the truth on the items every scorer scored, with their intervals."""
    truth = delta_io.read_arrow(settings.table_root(TRUTH_TABLE), filters=pc.field("content_id").isin(list(frame["content_id"]))).to_pylist()
    truth_of = {row["content_id"]: int(TRUTH[task](row)) for row in truth}
    judged = frame.assign(label=frame["content_id"].map(truth_of).astype(int))  # the same scores, against the truth
    one_class = roc_auc_not_defined(judged, scorers, "the truth")
    return {"roc_auc": {s: None if s in one_class else float(roc_auc_score(judged["label"][judged[s].notna()], judged[s].dropna()))
                        for s in scorers},
            "roc_auc_not_defined": one_class,
            "gold_agrees": float((judged["label"] == frame["label"]).mean()),
            "weak_head_margin": leads(common_items(judged), "weak_head", BASELINES) if "weak_head" in scorers else {}}


def roc_auc_not_defined(frame: pd.DataFrame, scorers: Sequence[str], labels: str) -> dict[str, str]:
    """Why each of `scorers` whose scored items of the frame hold one class of `label` has no ROC-AUC (`labels`: whose
    labels those are, "the gold", "the truth"), kept beside the None so that a report says more than "-"."""
    held = {s: frame["label"][frame[s].notna()] for s in scorers}
    return {s: f"{labels} holds one class on its {len(held[s])} scored items" for s in scorers if held[s].nunique() < 2}


def undefined_said(result: Mapping[str, Any]) -> list[str]:
    """Each scorer of a task's test-split figures (compare_heads) without a ROC-AUC, the crossover's points
    without one and the items every scorer scored where none has one, and why (`roc_auc_not_defined`),
    in words (none: nothing to say; a report written before kept no reason)."""
    said = [f"{scorer} has no ROC-AUC on held-out gold ({why})" for scorer, why in result.get("roc_auc_not_defined", {}).items()
            if scorer in SCORERS]  # the crossover's heads (gold_<n>) are said by their points, below
    points: dict[str, list[str]] = {}
    for point in result.get("crossover", {}).get("curve", []):
        if "roc_auc_not_defined" in point:
            points.setdefault(point["roc_auc_not_defined"], []).append(str(point["gold_labels"]))
    said += [f"the crossover's gold-only heads on {', '.join(sizes)} gold labels have no ROC-AUC on held-out gold ({why})"
             for why, sizes in points.items()]
    compared = result.get("compared", {})
    said += [f"no scorer has a ROC-AUC on the {compared['items']} held-out items every scorer scored, so no margin over a baseline ({why})"
             for why in sorted(set(compared.get("roc_auc_not_defined", {}).values()))]  # one reason: every scorer is on those items
    return said


def beyond_noise(margins: Mapping[str, Mapping[str, float] | None]) -> bool:
    """Whether the weak-label head beats every baseline by more than the interval allows for chance."""
    return all(lead_is_clear(m) for m in margins.values())


def crossover_sizes(available: int) -> list[int]:
    """The gold sample sizes of the curve: CROSSOVER_START, then doubling, below `available`, and `available` itself."""
    sizes = [n for n in CROSSOVER_START if n < available]
    while sizes and sizes[-1] * 2 < available:
        sizes.append(sizes[-1] * 2)
    return [*sizes, available]


def held_out_items(settings: Settings, gold: pd.DataFrame, signal: str, model_version: str) -> list[str]:
    """The gold items in the test split (as a snapshot of `signal` splits them now)."""
    return list(pin_snapshot(settings.lakehouse_root, signal, model_version, gold, fractions=settings.training.splits).targets("test"))


def compare_heads(settings: Settings, task: str, weak: pd.DataFrame, gold: pd.DataFrame, majority: pd.DataFrame,
                  signal: str, model_version: str, joined: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """Every scorer's metrics on the held-out gold items (scorer_figures), how many held-out gold items
    have no ok embedding row (`held_out_without_row`: no head can score them, as `train` says), and the crossover curve: a head
    trained on a seeded sample of n gold labels (from outside the test split, of items with an ok
    row: a label without one is never trained on) per curve point, the last being all of them (the gold head)."""
    conf = settings.training
    root = settings.lakehouse_root
    weak_snapshot = pin_snapshot(root, signal, model_version, weak, fractions=conf.splits, joined=joined)
    frame, vectors, without_row = held_out_gold(settings, task, weak_snapshot, gold, majority, reads=ReadVersions.latest(settings))  # read once, for every head
    frame["weak_head"] = train_head(weak_snapshot, conf).scores(vectors)
    frame["label_model"] = weak.drop_duplicates("content_id").set_index("content_id")["p_positive"].reindex(frame["content_id"]).to_numpy()

    def pinned(labels: pd.DataFrame) -> Snapshot:
        return pin_snapshot(root, signal, model_version, labels, weak_snapshot.embeddings_version, weak_snapshot.duplicates_version,
                            conf.splits, joined)

    gold_snapshot = pinned(gold)
    with_rows = {c for split in ("train", "validation") for batch in batches(gold_snapshot, split, 1024, 1) for c in batch["content_id"]}
    outside_test = gold_snapshot.labels["content_id"][gold_snapshot.labels["content_id"].isin(with_rows)].to_numpy()  # gold a head trains on
    rng = np.random.default_rng(conf.seed)
    curve = []
    for n in crossover_sizes(len(outside_test)):
        chosen = gold if n == len(outside_test) else gold[gold["content_id"].isin(rng.choice(outside_test, n, replace=False))]
        column = "gold_head" if n == len(outside_test) else f"gold_{n}"
        frame[column] = train_head(gold_snapshot if n == len(outside_test) else pinned(chosen), conf).scores(vectors)
        curve.append((n, column))
    figures, auc = scorer_figures(task, frame, settings, f"{task}: heads on held-out gold")
    weak_auc = auc["weak_head"]
    undefined = figures["roc_auc_not_defined"]  # heads score every item: on the same items, each point with its reason where it has no ROC-AUC
    points = [{"gold_labels": n, "roc_auc": auc[column], **({"roc_auc_not_defined": undefined[column]} if column in undefined else {})}
              for n, column in curve]
    matched = next((p["gold_labels"] for p in points if weak_auc is not None and p["roc_auc"] is not None and p["roc_auc"] >= weak_auc), None)
    return {
        "embedding": JOIN.join(f"{s}@{v}" for s, v in ((signal, model_version), *joined)), "held_out_items": len(frame), "held_out_positives": int(frame["label"].sum()),
        "held_out_without_row": without_row,
        **figures, "roc_auc": {scorer: auc.get(scorer) for scorer in SCORERS},
        "crossover": {"curve": points, "gold_labels_to_match_weak_head": matched, "gold_labels_outside_test": len(outside_test)},
    }


def cross_fitted(settings: Settings, task: str, gold: pd.DataFrame,
                 weak_without: Callable[[list[str]], tuple[pd.DataFrame, pd.DataFrame]],
                 signal: str, model_version: str, joined: tuple[tuple[str, str], ...] = (), folds: int = CROSS_FIT_FOLDS) -> dict[str, Any]:
    """Every scorer's ROC-AUC over all gold items, not one test split's: per fold of near-duplicate
    groups, weak labels and majority vote made without that fold's gold (`weak_without(held ids)`),
    a weak-label head and a gold head trained on the other folds (the next one for validation), and
    the fold's items scored by them; the rule as it is. A fold a scorer scored none of keeps its
    items for the others (scorer_figures); the gold items without an ok embedding row, in no fold's
    frame, are counted (`without_row`)."""
    conf = settings.training
    root = settings.lakehouse_root
    gold_snapshot = pin_snapshot(root, signal, model_version, gold, fractions=conf.splits, joined=joined)  # as compare_heads' gold head
    parts, without_row = [], 0
    for f in range(folds):
        gold_folds = with_folds(gold_snapshot, f, folds)
        weak, majority = weak_without(list(gold_folds.targets("test")))
        weak_snapshot = pin_snapshot(root, signal, model_version, weak, gold_snapshot.embeddings_version, gold_snapshot.duplicates_version,
                                     conf.splits, joined)
        frame, vectors, fold_without_row = held_out_gold(settings, task, weak_snapshot, gold, majority, (f, folds), reads=ReadVersions.latest(settings))
        without_row += fold_without_row
        frame["weak_head"] = train_head(with_folds(weak_snapshot, f, folds), conf).scores(vectors)
        frame["gold_head"] = train_head(gold_folds, conf).scores(vectors)
        frame["label_model"] = weak.drop_duplicates("content_id").set_index("content_id")["p_positive"].reindex(frame["content_id"]).to_numpy()
        parts.append(frame)
    frame = pd.concat(parts, ignore_index=True)
    figures, auc = scorer_figures(task, frame, settings, f"{task}: heads cross-fitted")
    auc = {scorer: auc[scorer] for scorer in SCORERS if scorer in auc}
    return {"folds": folds, "items": len(frame), "positives": int(frame["label"].sum()), "without_row": without_row, **figures, "roc_auc": auc,
            "against_truth": against_truth(settings, task, frame, list(auc))}


def scorer_figures(task: str, frame: pd.DataFrame, settings: Settings, title: str) -> tuple[dict[str, Any], dict[str, float | None]]:
    """Each scorer's ROC-AUC on the frame's items it scored (and how many: a rule or a majority vote
    may have no score of some), and, as every comparison of two scorers must be paired, the
    weak-label head against each baseline on the items every scorer scored (`compared`, how many
    and their ROC-AUCs there, and why they have none), and why a scorer has none (`roc_auc_not_defined`:
    its scored items hold one class of gold): the figures, and the ROC-AUCs by scorer."""
    evaluation = evaluate(task, frame.dropna(axis="columns", how="all"), settings.training.precision_at_recall,
                          settings.training.gate.min_slice_items, title)
    auc = {scorer: metrics["roc_auc"] for scorer, metrics in evaluation.metrics.items()}
    compared = common_items(frame)
    labels = compared["label"].to_numpy(dtype=int)
    undefined = roc_auc_not_defined(compared, scorers(compared), "the gold")  # every scorer is on these items: all or none
    margin = leads(compared, "weak_head", BASELINES)
    return {"scored_items": {scorer: int(metrics["items"]) for scorer, metrics in evaluation.metrics.items()},
            "roc_auc_not_defined": roc_auc_not_defined(frame, list(evaluation.metrics), "the gold"),
            "compared": {"items": len(compared), "positives": int(labels.sum()),
                         "roc_auc": {s: None if s in undefined else float(roc_auc_score(labels, compared[s])) for s in scorers(compared)},
                         "roc_auc_not_defined": undefined},
            "weak_head_beats": {b: None if margin[b] is None else margin[b]["difference"] > 0 for b in BASELINES},
            "weak_head_margin": margin}, auc


def evaluate_heads(settings: Settings, versions: Mapping[str, str], folder: Path) -> dict[str, Any]:
    """The heads section: per task, the corpus labelled (the exports under `folder`), cross_fitted,
    then weak labels made without the test split's gold and compare_heads; whether the weak-label
    head beat every baseline on at least TASKS_TO_BEAT tasks, on the test split and cross-fitted;
    and the loader against pandas (training/loader_benchmark.py)."""
    tasks = {}
    for name in TASKS:
        started = time.monotonic()
        label_sample_corpus(settings, name, folder / "labels")
        signal, *others = embedding_signals(settings, name)
        joined = tuple((s, versions[s]) for s in others)
        gold = gold_labels(settings.lakehouse_root, name)

        def weak_without(held: list[str], task: str = name, gold: pd.DataFrame = gold) -> tuple[pd.DataFrame, pd.DataFrame]:
            run_weak(settings.lakehouse_root, task, versions, readable_gold=sorted(set(gold["content_id"]) - set(held)))
            weak, _, majority = label_frames(settings.lakehouse_root, task, "weak", ReadVersions.latest(settings))
            return weak, majority

        cross = cross_fitted(settings, name, gold, weak_without, signal, versions[signal], joined)
        weak, majority = weak_without(held_out_items(settings, gold, signal, versions[signal]))
        tasks[name] = {**compare_heads(settings, name, weak, gold, majority, signal, versions[signal], joined), "cross_fitted": cross}
        tasks[name]["seconds"] = round(time.monotonic() - started, 1)
    beaten = [t for t, r in tasks.items() if all(r["weak_head_beats"].values())]
    beaten_cross = [t for t, r in tasks.items() if all(r["cross_fitted"]["weak_head_beats"].values())]
    beyond = [t for t, r in tasks.items() if beyond_noise(r["cross_fitted"]["weak_head_margin"])]
    beyond_truth = [t for t, r in tasks.items() if beyond_noise(r["cross_fitted"]["against_truth"]["weak_head_margin"])]
    with tempfile.TemporaryDirectory() as scratch:
        loader = loader_against_pandas(Path(scratch), settings.training)
    return {"tasks": tasks, "weak_head_beats_baselines_on": beaten, "target_met": len(beaten) >= TASKS_TO_BEAT,
            "cross_fitted": {"weak_head_beats_baselines_on": beaten_cross, "target_met": len(beaten_cross) >= TASKS_TO_BEAT,
                             "beyond_noise_on": beyond, "beyond_noise_against_truth_on": beyond_truth},
            "loader": loader}


def write_heads_report(section: Mapping[str, Any], path: Path) -> Path:
    """The section as one self-contained HTML page: the ROC-AUC table (with the held-out gold no head
    could score, and why a scorer has no ROC-AUC), the crossover and the figure."""
    import html

    from rollout.html_report import html_page, html_table, image_tag

    tasks = section["tasks"]
    parts = [html_table([[t, r["held_out_items"], r["held_out_without_row"], *(r["roc_auc"][s] for s in SCORERS)] for t, r in tasks.items()],
                        ["task", "held-out gold items", "held-out gold without an ok embedding row (no scorer judged on them)", *SCORERS]),
             *(f"<p>{html.escape(f'{t}: {note}')}</p>" for t, r in tasks.items() for note in undefined_said(r)),
             html_table([[t, p["gold_labels"], p["roc_auc"], r["roc_auc"]["weak_head"]] for t, r in tasks.items() for p in r["crossover"]["curve"]],
                        ["task", "gold labels", "gold-only head ROC-AUC", "weak-label head ROC-AUC"]),
             html_table([[t, items, b, *(None if m is None else m[k] for k in ("difference", "ci95_low", "ci95_high"))]
                         for t, r in tasks.items()
                         for items, margins in (("test split", r["weak_head_margin"]), ("cross-fitted", r.get("cross_fitted", {}).get("weak_head_margin", {})))
                         for b, m in margins.items()],
                        ["task", "gold items", "baseline", "weak-label head minus baseline (ROC-AUC)", "95% interval: low", "high"]),
             image_tag("heads", heads_figure(section))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_page("heads on held-out gold", parts), encoding="utf-8")
    return path


def heads_figure(section: Mapping[str, Any]) -> bytes:
    """ROC-AUC bars per task and scorer beside each task's crossover curve (against its weak-label head), as PNG;
    a scorer without a ROC-AUC has no bar but, where it would stand, a mark and why (`roc_auc_not_defined`)."""
    from matplotlib.figure import Figure

    from rollout.html_report import figure_png

    tasks: Sequence[str] = list(section["tasks"])
    figure = Figure(figsize=(11, 4))
    bars, curves = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    width, low = 0.8 / len(SCORERS), 0.4
    for i, scorer in enumerate(SCORERS):
        at = np.arange(len(tasks)) + i * width
        values = [section["tasks"][t]["roc_auc"].get(scorer) for t in tasks]
        drawn = bars.bar([x for x, v in zip(at, values) if v is not None], [v for v in values if v is not None], width, label=scorer)
        for x, t in ((x, t) for x, t, v in zip(at, tasks, values) if v is None):  # a bar of 0 would lie below the axis, unseen
            why = section["tasks"][t].get("roc_auc_not_defined", {}).get(scorer)
            bars.plot(x, low, marker="x", color=drawn.patches[0].get_facecolor() if drawn.patches else "black", clip_on=False)
            bars.text(x, low + 0.01, "no ROC-AUC" + (f": {why}" if why else ""), rotation=90, ha="center", va="bottom", fontsize=6)
    bars.set_xticks(np.arange(len(tasks)) + width * (len(SCORERS) - 1) / 2, tasks)
    bars.set(ylim=(low, 1.0), ylabel="ROC-AUC on held-out gold", title="scorers per task")
    bars.legend(fontsize=7)
    for t in tasks:
        result = section["tasks"][t]
        points = result["crossover"]["curve"]
        line = curves.plot([p["gold_labels"] for p in points], [p["roc_auc"] for p in points], marker="o", label=f"{t}: gold-only head")[0]
        if result["roc_auc"]["weak_head"] is not None:
            curves.axhline(result["roc_auc"]["weak_head"], color=line.get_color(), linestyle=":", label=f"{t}: weak-label head")
    curves.set(xscale="log", xlabel="gold labels", ylabel="ROC-AUC on held-out gold", title="crossover")
    curves.legend(fontsize=7)
    return figure_png(figure)
