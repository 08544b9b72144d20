"""Seeded draws shared by the sample corpus's parts, so params JSON stays readable and sequences of
tuples are drawn as they are."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A float rounded to 3 decimals, so params JSON stays readable and exact."""
    return round(float(rng.uniform(low, high)), 3)


def pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    """One element of a sequence (rng.choice would turn tuples into arrays)."""
    return options[int(rng.integers(len(options)))]
