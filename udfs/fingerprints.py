"""Fingerprint columns for near-duplicate detection: pHash of the image (its bytes, or fetched by
URI as the signals fetch it), SimHash of a vector.

Both are pandas UDFs over `signals` code, so the dedup job, the tests and an online scorer
hash the same way. A bad image yields a null hash and the decode error, never a failed task:
any exception of decoding or hashing one image is that image's error. A flat image's hash is
flagged (`flat`, see signals.labels.perceptual_hash) so that dedup draws no pHash edge from it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from signals.decode import DecodeLimits, InputError, decode_image
from signals.fetch import FetchPolicy, fetch
from signals.labels.perceptual_hash import embedding_simhashes, phash_of
from signals.text import field_text

PHASH_RESULT = T.StructType([T.StructField("phash", T.LongType()), T.StructField("flat", T.BooleanType()),
                             T.StructField("error", T.StringType()), T.StructField("fetched_sha256", T.StringType())])


def phash_or_error(data: bytes | None, limits: DecodeLimits) -> dict:
    """{phash, flat, error} of one image's bytes: the hash, or a null hash and the reason."""
    try:
        phash, flat = phash_of(decode_image(data, limits))
        return {"phash": phash, "flat": flat, "error": None}
    except InputError as exc:
        return {"phash": None, "flat": None, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one image's failure is that image's error, never the job's
        return {"phash": None, "flat": None, "error": f"hashing failed: {type(exc).__name__}: {exc}"}


def fingerprint_or_error(image: bytes | None, uri: str | bytes | None, limits: DecodeLimits, policy: FetchPolicy) -> dict:
    """{phash, flat, error, fetched_sha256} of an item's image: its bytes, else those fetched
    from its URI within `policy` (then also their sha256, the exact-duplicate hash Spark computes
    for inline bytes); a URI comes as bytes, and one that is not UTF-8 is the row's error."""
    if image is not None or uri is None:
        return {**phash_or_error(image, limits), "fetched_sha256": None}
    try:
        data = fetch(field_text(uri, "image_uri"), policy)
    except Exception as exc:  # noqa: BLE001 - whatever a row's URI does is that row's error, never the task's
        return {"phash": None, "flat": None, "error": str(exc) if isinstance(exc, InputError) else f"fetch failed: {type(exc).__name__}: {exc}",
                "fetched_sha256": None}
    return {**phash_or_error(data, limits), "fetched_sha256": hashlib.sha256(data).hexdigest()}


def phash_column(image: Column, image_uri: Column, limits: DecodeLimits, policy: FetchPolicy) -> Column:
    """struct(phash long, flat boolean, error string, fetched_sha256 string) of an item's image
    (bytes, else fetched by URI), decoded within `limits`."""

    @pandas_udf(PHASH_RESULT)  # type: ignore[call-overload]
    def phash(images: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        for data, uris in images:
            results = [fingerprint_or_error(d, u, limits, policy) for d, u in zip(data, uris)]
            # Int64, not float64: a null beside 64-bit hashes must not round them
            yield pd.DataFrame({"phash": pd.array([r["phash"] for r in results], dtype="Int64"),
                                "flat": pd.array([r["flat"] for r in results], dtype="boolean"),
                                "error": [r["error"] for r in results], "fetched_sha256": [r["fetched_sha256"] for r in results]})

    return phash(image, image_uri.cast("binary"))  # as bytes: a URI that is not UTF-8 is its row's error, not the task's


def simhash_column(vector: Column, seed: int, bits: int) -> Column:
    """`bits`-bit SimHash (array of longs, signals.labels.perceptual_hash.embedding_simhashes) of an
    array<float> column, each width of vector hashed apart; null where the vector is null."""

    @pandas_udf(T.ArrayType(T.LongType()))  # type: ignore[call-overload]
    def simhash(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for vectors in batches:
            yield pd.Series(embedding_simhashes(list(vectors.where(vectors.notna(), None)), seed, bits), dtype=object)

    return simhash(vector)
