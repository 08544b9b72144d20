"""The command line's exit statuses and what each means, in one place for the failures' explanations
(jobs/failures.py) and the top-level `--help`; the standard library only, so `--help` stays quick."""
from __future__ import annotations

DONE, BUG, BAD_INPUT, CONFLICT, DAMAGED, ALERTED = 0, 1, 2, 3, 4, 5
EXIT_STATUSES = {
    DONE: "done (or nothing to do)",
    BUG: "an unexpected error, a bug: its traceback is printed",
    BAD_INPUT: "the command or its configuration is wrong (nothing ran)",
    CONFLICT: "another run changed the same partitions meanwhile, or another promote or rollback the same alias "
              "(nothing committed or moved: run again)",
    DAMAGED: "the lakehouse is damaged (a table's log or data file, or the local registry's database, is unreadable: "
             "the message says how to heal it)",
    ALERTED: "a monitored run raised alerts (`monitor`, `--monitor`: its commits landed, the alerts table says what fired)",
}


def exit_statuses_help() -> str:
    """The statuses as the top-level `--help` lists them, one a line, for schedulers."""
    return "exit statuses:\n" + "\n".join(f"  {status}  {meaning}" for status, meaning in EXIT_STATUSES.items())
