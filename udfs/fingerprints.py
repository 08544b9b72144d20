"""Fingerprint columns for near-duplicate detection: pHash of the image, SimHash of a vector.

Both are pandas UDFs over `signals` code, so the dedup job, the tests and an online scorer
hash the same way. A bad image yields a null hash and the decode error, never a failed task.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from signals.decode import InputError, decode_image
from signals.labels.perceptual_hash import embedding_simhash, perceptual_hash

PHASH_RESULT = T.StructType([T.StructField("phash", T.LongType()), T.StructField("error", T.StringType())])


def _phash_or_error(data: bytes | None) -> dict:
    try:
        return {"phash": perceptual_hash(decode_image(data)), "error": None}
    except InputError as exc:
        return {"phash": None, "error": str(exc)}


@pandas_udf(PHASH_RESULT)  # type: ignore[call-overload]
def _phash(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
    for images in batches:
        results = [_phash_or_error(data) for data in images]
        # Int64, not float64: a null beside 64-bit hashes must not round them
        yield pd.DataFrame({"phash": pd.array([r["phash"] for r in results], dtype="Int64"), "error": [r["error"] for r in results]})


def phash_column(image: Column) -> Column:
    """struct(phash long, error string) of an image bytes column."""
    return _phash(image)


def simhash_column(vector: Column, seed: int = 0) -> Column:
    """64-bit SimHash (long) of an array<float> column; null where the vector is null."""

    @pandas_udf(T.LongType())  # type: ignore[call-overload]
    def simhash(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for vectors in batches:
            present = vectors.notna().to_numpy()
            out = pd.Series(pd.array([None] * len(vectors), dtype="Int64"))
            if present.any():
                out[present] = embedding_simhash(np.stack(vectors[present].to_numpy()), seed)
            yield out

    return simhash(vector)
