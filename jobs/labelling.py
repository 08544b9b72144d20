"""The `labels` and `label-sample` commands: human labels imported, gold and agreement printed, weak
labels made, items to label next chosen (training/; delta-rs on the driver, no Spark)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.markup import escape

from conf.settings import Settings, UsageError
from jobs.show import console, print_agreement, print_weak
from lake import delta_io
from lake.corpus import CorpusTable
from lake.lakehouse import Lakehouse
from sample_corpus.generate import truth_root
from signals.contracts import EMBEDDINGS, LABELS
from training.annotators import simulate, write_exports
from training.gold import agreement
from training.human_labels import import_labels
from training.labeling_functions import NEIGHBOUR_SIGNAL
from training.sampling import candidates, current_head, head_probabilities, most_uncertain, write_task_file
from training.tasks import task_named
from training.weak import run_weak, weak_labels


def champion_versions(settings: Settings) -> dict[str, str]:
    """signal -> champion model version of every signal with rows (labels and embeddings tables)."""
    lakehouse = Lakehouse.of(settings)  # the versions the jobs run: a pinned one where the profile pins it
    if missing := [name for name in (EMBEDDINGS.name, LABELS.name) if name not in lakehouse.tables()]:
        raise UsageError(f"no {' or '.join(missing)} table in {settings.lakehouse_root}: run a backfill first (content-signals backfill)")
    return {**lakehouse.champions(EMBEDDINGS.name), **lakehouse.champions(LABELS.name)}


def _folder(out: str) -> Path:
    """An `--out` folder, refused before any work when it is a file: `labels weak` writes its report after its commit."""
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is a file: name a folder")
    return Path(out)


def _task_file(out: str | None, task: str) -> Path:
    """label-sample's task file, refused before any work where it cannot be written: a folder, a path under
    a file, or an `.xml`, the name its labelling config takes beside it."""
    path = Path(out or f"reports/labels/{task}-tasks.json")
    above = next((p for p in path.parents if p.exists()), Path("."))
    if path.is_dir() or not above.is_dir() or path.suffix.lower() == ".xml":
        raise UsageError(f"--out {path}: name a task file (.json) in a folder, not a folder, a path under a file or an .xml "
                         "(the labelling config is written beside it as .xml)")
    return path


def run_labels(settings: Settings, args: argparse.Namespace) -> None:
    """`labels import|simulate|gold|weak --task T`."""
    task = task_named(args.task).name
    root = settings.lakehouse_root
    if args.labels_command == "import":
        outcome = import_labels(root, CorpusTable.of(settings), Path(args.file), task)
        console.print(f"{escape(args.file)}: {outcome.rows} labels of {task}, batch {outcome.batch}: "
                      + ("already imported, nothing done" if outcome.version is None else f"imported (human_labels version {outcome.version})"))
    elif args.labels_command == "simulate":
        if args.n is not None and args.n < 1:
            raise UsageError(f"--n {args.n}: simulate at least one item")
        out = _folder(args.out)
        truth = delta_io.read_arrow(truth_root(settings.lakehouse_root))
        paths = write_exports(simulate(truth, task_named(task), args.seed, args.n), task_named(task), out)
        console.print(f"simulated annotators' labels of {task}: " + escape(", ".join(map(str, paths))))
    elif args.labels_command == "gold":
        print_agreement(agreement(root, task))
    else:
        out = _folder(args.out) / f"{task}-weak.json"
        run = run_weak(root, task, champion_versions(settings))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(run.report, indent=1))
        print_weak(run.report)
        console.print(f"weak_labels version {run.version} ({run.items} items); report: {escape(str(out))}")


def label_sample(settings: Settings, args: argparse.Namespace) -> None:
    """`label-sample TASK --n N`: a Label Studio task file of the items worth labelling next."""
    task = task_named(args.task).name
    if args.n < 1:
        raise UsageError(f"--n {args.n}: ask for at least one item")
    out = _task_file(args.out, task)
    head = current_head(settings, task)
    if head is not None:
        signal, version = head.params["embedding_signal"], head.params["embedding_model_version"]
        probabilities, scored_by = head_probabilities(settings.lakehouse_root, head), f"{head.name} version {head.version}"
    else:
        signal = NEIGHBOUR_SIGNAL[task]
        versions = champion_versions(settings)
        if signal not in versions:
            raise UsageError(f"no champion rows of {signal} in {settings.lakehouse_root}: run a backfill first")
        version, probabilities, scored_by = versions[signal], weak_labels(settings.lakehouse_root, task), "the label model"
    ranked = most_uncertain(candidates(settings.lakehouse_root, task, signal, version, probabilities))
    if ranked.empty:
        console.print(f"every item with an ok {signal} row is labelled for {task} (or has no probability yet): nothing to sample")
        return
    task_file = write_task_file(CorpusTable.of(settings), ranked, task, out, scored_by, args.n)
    if task_file.passed_over:
        console.print(f"passed over {len(task_file.passed_over)} items with no image to show (neither bytes nor an image_uri) or no longer "
                      f"in the corpus (e.g. {escape(', '.join(task_file.passed_over[:5]))})")
    if task_file.uri_not_utf8:
        console.print(f"passed over {len(task_file.uri_not_utf8)} items whose image_uri is not UTF-8 (and no image bytes): "
                      f"no address Label Studio can load (e.g. {escape(', '.join(task_file.uri_not_utf8[:5]))})")
    if task_file.text_not_utf8:
        console.print(f"{len(task_file.text_not_utf8)} items written with a title or description that is not UTF-8 (shown with U+FFFD) "
                      f"(e.g. {escape(', '.join(task_file.text_not_utf8[:5]))})")
    console.print(f"{len(task_file.written)} items of {task} to label next, the most uncertain under {scored_by}, "
                  f"over {task_file.written['ds'].nunique()} days: {escape(str(out))} (config {escape(str(out.with_suffix('.xml')))})")
