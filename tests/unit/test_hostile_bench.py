"""benchmarks.hostile on two classes: each in a process of its own, every image an error row,
the peak memory and time measured and within the budget."""
from __future__ import annotations

import pytest

from benchmarks import hostile

pytestmark = pytest.mark.subprocess


def test_thin_strips_and_malformed_exif_become_error_rows_within_the_budget() -> None:
    held_by_the_parent = b"\x01" * (hostile.TASK_BUDGET_BYTES + 2**28)  # as a long pytest run does: not the child's
    report = hostile.run(["thin_png", "malformed_exif"])
    del held_by_the_parent
    assert set(report["classes"]) == {"thin_png", "malformed_exif"}
    for result in report["classes"].values():
        assert not result["crashed"], result.get("stderr")
        assert result["outcomes"]["value"] == result["outcomes"]["escaped"] == 0
        assert result["outcomes"]["error"] == len(result["images"]) > 0
        assert 0 < result["baseline_rss_bytes"] <= result["peak_rss_bytes"] <= hostile.TASK_BUDGET_BYTES
        assert result["worst_seconds"] < hostile.IMAGE_BUDGET_S
    assert report["summary"] == {"over_budget": [], "escaped": [], "crashed": [], "within_budget": True}
