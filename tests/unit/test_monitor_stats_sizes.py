"""The statistics pass reads Spark's task size from its setting: sizes as Spark writes them."""
from __future__ import annotations

import pytest

from monitoring.stats import size_bytes


@pytest.mark.parametrize(("text", "expected"), [("8m", 8 << 20), ("512k", 512 << 10), ("134217728b", 134217728), ("1g", 1 << 30),
                                                ("64MB", 64 << 20), ("4096", 4096)])
def test_spark_sizes_in_bytes(text: str, expected: int) -> None:
    assert size_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "m", "8 parsecs", "-1m", "1.5g"])
def test_what_is_not_a_size_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        size_bytes(text)
