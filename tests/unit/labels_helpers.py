"""What the label tests share: a CPU signal config, image bytes, a labeler run over one frame,
and a row's scores as a mapping."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from signals.base import ModelRef, SignalConfig
from signals.runner import run_signal


def config(name: str, version: str = "test", batch_size: int = 4, model: str | None = None, **params) -> SignalConfig:
    """Signal `name` on the CPU; its model is named `model` (default: the signal's name)."""
    return SignalConfig(name, ModelRef(model or name, version), batch_size=batch_size, device="cpu", params=params)


def jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def run(labeler, frame: pd.DataFrame) -> pd.DataFrame:
    """The labeler (loaded here) over one input frame: its result rows, indexed from 0."""
    return pd.concat(list(run_signal(labeler.load(), [frame]))).reset_index(drop=True)


def scores_of(scores: list[dict]) -> dict[str, float]:
    """A row's `scores` (a list of {label, score}) as label -> score."""
    return {s["label"]: s["score"] for s in scores}
