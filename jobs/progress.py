"""Progress of Spark actions, from the driver's status tracker.

Spark's own console bar is off (session.BASE_CONF). On a terminal, a live bar per stage names
the work and counts its tasks; elsewhere (a log file, a scheduler's capture) a block leaves a line
every `REPORT_EVERY_S` while it runs (its tasks done so far: a backfill's block runs for hours on a
large corpus, and a log silent that long reads as a hung job) and one when it ends: its stages,
tasks and seconds.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark import SparkContext
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)
REPORT_EVERY_S = 60.0  # off a terminal, a running block's line of progress this often


@contextmanager
def spark_progress(sc: SparkContext, description: str, poll_s: float = 0.5, report_s: float = REPORT_EVERY_S) -> Iterator[None]:
    """Show task progress of the Spark stages started inside the block (off a terminal, a line every `report_s`)."""
    tracker = sc.statusTracker()
    group = f"content-signals-{id(description)}-{threading.get_ident()}"
    sc.setJobGroup(group, description)
    live = console.is_terminal
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False, disable=not live)
    bars: dict[int, int] = {}
    tasks_done: dict[int, int] = {}
    tasks: dict[int, int] = {}
    stop = threading.Event()
    started = time.monotonic()

    def refresh(final: bool = False) -> None:
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                info = tracker.getStageInfo(stage_id)
                if info is None or info.numTasks == 0:
                    continue
                if stage_id not in bars:
                    bars[stage_id] = progress.add_task(f"{description} (stage {stage_id})", total=info.numTasks)
                # a stage that never ran a task when the action ended was skipped (its output
                # was cached or computed by an earlier job): not worth a line
                visible = not (final and info.numCompletedTasks == 0)
                progress.update(bars[stage_id], completed=info.numCompletedTasks, total=info.numTasks, visible=visible)
                tasks_done[stage_id], tasks[stage_id] = info.numCompletedTasks, info.numTasks

    def poll() -> None:
        reported = started
        while not stop.wait(poll_s):
            refresh()
            if not live and time.monotonic() - reported >= report_s:
                reported = time.monotonic()
                console.print(f"{description}: {sum(tasks_done.values())} of {sum(tasks.values())} tasks done in {len(tasks)} stages, "
                              f"{reported - started:.0f}s so far")

    thread = threading.Thread(target=poll, name="spark-progress", daemon=True)
    with progress:
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            refresh(final=True)  # stages leave the active list before the last poll: finish from stage info
            sc.setLocalProperty("spark.jobGroup.id", None)
    if not live:
        ran = {stage: n for stage, n in tasks_done.items() if n}
        console.print(f"{description}: {len(ran)} stages, {sum(ran.values())} tasks in {time.monotonic() - started:.1f}s")
