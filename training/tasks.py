"""The tasks we train our own signals for, named once so labels, rules, heads and the gate agree."""
from __future__ import annotations

from dataclasses import dataclass

from conf.settings import UsageError


@dataclass(frozen=True)
class Task:
    """A binary labelling task: its label values (the positive one last) and what it asks."""

    name: str
    question: str
    values: tuple[str, str] = ("no", "yes")

    @property
    def positive(self) -> str:
        return self.values[1]


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("low_quality", "Is the image of low quality (blurred, low resolution)?"),
        Task("text_heavy", "Does text cover a large part of the image?"),
        Task("spam_text", "Are the title and description spam?"),
    )
}


def task_named(name: str) -> Task:
    """The task called `name`, or a usage error listing the tasks there are."""
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; the tasks are: {', '.join(TASKS)}")
    return TASKS[name]
