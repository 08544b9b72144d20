"""Fingerprint columns for near-duplicate detection: pHash of the image, SimHash of a vector.

Both are pandas UDFs over `signals` code, so the dedup job, the tests and an online scorer
hash the same way. A bad image yields a null hash and the decode error, never a failed task:
any exception of decoding or hashing one image is that image's error. A flat image's hash is
flagged (`flat`, see signals.labels.perceptual_hash) so that dedup draws no pHash edge from it.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from signals.decode import DecodeLimits, InputError, decode_image
from signals.labels.perceptual_hash import embedding_simhash, phash_of

PHASH_RESULT = T.StructType([T.StructField("phash", T.LongType()), T.StructField("flat", T.BooleanType()), T.StructField("error", T.StringType())])


def phash_or_error(data: bytes | None, limits: DecodeLimits) -> dict:
    """{phash, flat, error} of one image's bytes: the hash, or a null hash and the reason."""
    try:
        phash, flat = phash_of(decode_image(data, limits))
        return {"phash": phash, "flat": flat, "error": None}
    except InputError as exc:
        return {"phash": None, "flat": None, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one image's failure is that image's error, never the job's
        return {"phash": None, "flat": None, "error": f"hashing failed: {type(exc).__name__}: {exc}"}


def phash_column(image: Column, limits: DecodeLimits) -> Column:
    """struct(phash long, flat boolean, error string) of an image bytes column, decoded within `limits`."""

    @pandas_udf(PHASH_RESULT)  # type: ignore[call-overload]
    def phash(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for images in batches:
            results = [phash_or_error(data, limits) for data in images]
            # Int64, not float64: a null beside 64-bit hashes must not round them
            yield pd.DataFrame({"phash": pd.array([r["phash"] for r in results], dtype="Int64"),
                                "flat": pd.array([r["flat"] for r in results], dtype="boolean"), "error": [r["error"] for r in results]})

    return phash(image)


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
