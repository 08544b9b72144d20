"""A video item's rows for the image signals: its keyframes, from one decode of the video, through
each signal with the same runner and signal code as a photo, as rows of the `keyframes` table,
and the video's own row(s) in each signal's table (`embeddings`: the pooled embedding; `labels`:
each label's maximum over keyframes, with when it occurs).

A keyframe reaches the signal as a lossless PNG in the `image` column, so the signal reads it
exactly as it reads a photo (same decoding, limits and preprocessing), and the values stored for
a keyframe are the signal's values on the decoded frame. Keyframes go to the signal a model batch
at a time while the video is decoded; only their results (a vector or a few scores each) are kept
until the video ends, so a worker's memory does not grow with the video's length.
"""
from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
from PIL import Image

from signals.base import Signal
from signals.contracts import EMBEDDINGS, KEYFRAMES, STATUS_ERROR, STATUS_OK, is_retried_error
from signals.decode import InputError
from signals.labels.perceptual_hash import phash_of
from signals.runner import run_signal
from signals.shared_forward import share_backbones
from signals.table_rows import KEY_COLUMNS, RowStamp, output_of, table_rows
from signals.video.decoder_process import DecoderNotStarted
from signals.video.keyframes import Keyframe, VideoReading, video_keyframes
from signals.video.pooling import max_with_time, pooled_embedding

KEYFRAME_COLUMNS = ("keyframe_index", "shot_index", "start_s", "end_s", "time_s", "phash")
NO_KEYFRAME = -1  # the keyframe_index of a video's error row in the keyframes table


def png_bytes(image: Image.Image) -> bytes:
    """The image as an uncompressed PNG (lossless: decoded, it is the same pixels; uncompressed, each
    signal decodes it in half the time, and it lives only until its signals have read it)."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def keyframe_phash(keyframe: Keyframe) -> int | None:
    """The keyframe's pHash, None when it is flat: dedup's fingerprint of a video, computed here
    where the frame is at hand so that dedup never decodes a video (docs/design.md, Video)."""
    phash, flat = phash_of(keyframe.image)
    return None if flat else phash


def keyframe_frames(item: Mapping[str, Any], reading: VideoReading, rows: int) -> Iterator[pd.DataFrame]:
    """The item's `video` as frames of at most `rows` keyframe rows (its KEY_COLUMNS,
    KEYFRAME_COLUMNS, and the keyframe as PNG bytes in `image`), as the video is decoded;
    InputError, while iterating, for a video that cannot be used."""
    keys = {name: item.get(name) for name in KEY_COLUMNS}
    keyframes = video_keyframes(item.get("video"), reading.limits, reading.sampling)
    while chunk := list(itertools.islice(keyframes, rows)):
        yield pd.DataFrame({
            **{name: [value] * len(chunk) for name, value in keys.items()},
            **{name: [getattr(k, "index" if name == "keyframe_index" else name) for k in chunk] for name in KEYFRAME_COLUMNS[:-1]},
            "phash": pd.array([keyframe_phash(k) for k in chunk], dtype="Int64"),
            "image": [png_bytes(k.image) for k in chunk],
            "image_uri": [None] * len(chunk),
        })


SignalRows = tuple[pa.RecordBatch, pa.RecordBatch]  # a signal's rows of `keyframes`, and of its own table


def video_rows(signals: Sequence[tuple[Signal, RowStamp]], item: Mapping[str, Any], reading: VideoReading) -> list[SignalRows]:
    """For each (signal, stamp), the item's video's rows of the `keyframes` table and its row(s)
    in the signal's own table, from one decode of the video: each chunk of keyframes goes through
    every signal as it comes, and signals on one loaded model run it once (signals.shared_forward).
    A bad video is an error row in both for every signal (keyframe_index NO_KEYFRAME in
    `keyframes`), also when it is found bad only at its end (cut short)."""
    keys = {name: item.get(name) for name in KEY_COLUMNS}
    carry = (*KEY_COLUMNS, *KEYFRAME_COLUMNS)
    results: list[list[pd.DataFrame]] = [[] for _ in signals]
    chunk_rows = max(signal.batch_size for signal, _ in signals)
    share_backbones([signal for signal, _ in signals], chunk_rows)
    try:
        for frame in keyframe_frames(item, reading, chunk_rows):
            for (signal, _), done in zip(signals, results):
                done.extend(run_signal(signal, iter([frame]), prefetch=0, carry=carry))
    except InputError as exc:
        return [_failed(signal, stamp, keys, str(exc)) for signal, stamp in signals]
    except DecoderNotStarted:  # the worker is broken, not the video: no row would be computed again
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a hostile video makes FFmpeg or PyAV raise is this item's error
        return [_failed(signal, stamp, keys, f"video decoding failed: {type(exc).__name__}: {exc}") for signal, stamp in signals]
    rows = []
    for (signal, stamp), done in zip(signals, results):
        result = pd.concat(done, ignore_index=True)
        rows.append((keyframe_rows(signal, stamp, result), table_rows(output_of(signal), stamp, video_result(signal, keys, result))))
    return rows


def _failed(signal: Signal, stamp: RowStamp, keys: dict[str, Any], reason: str) -> SignalRows:
    """A bad video's error rows: one in `keyframes` (keyframe_index NO_KEYFRAME), one in the signal's table."""
    failed = _item_result(signal, keys, reason, None)
    no_keyframe = failed.assign(keyframe_index=NO_KEYFRAME, **dict.fromkeys(KEYFRAME_COLUMNS[1:]))
    return keyframe_rows(signal, stamp, no_keyframe), table_rows(output_of(signal), stamp, failed)


def keyframe_rows(signal: Signal, stamp: RowStamp, result: pd.DataFrame) -> pa.RecordBatch:
    """The `keyframes` table's rows for the runner's result on a video's keyframes: the signal's
    table rows (one per keyframe, or per keyframe and label) with the keyframe's columns."""
    rows = table_rows(output_of(signal), stamp, result)
    if output_of(signal) == EMBEDDINGS:
        repeat = list(range(len(result)))
    else:  # labels: as table_rows explodes them, one row per label, one for a keyframe without scores
        repeat = [i for i, scores in enumerate(result["scores"]) for _ in range(max(1, len(scores) if isinstance(scores, list) else 0))]
    columns = {name: [values[i] for i in repeat] for name in KEYFRAME_COLUMNS for values in [result[name].tolist()]}
    arrays = [
        pa.array(columns[f.name], type=f.type, from_pandas=True) if f.name in columns  # from_pandas: a missing phash is pd.NA
        else rows.column(f.name) if f.name in rows.schema.names
        else pa.nulls(len(repeat), type=f.type)
        for f in KEYFRAMES.schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=KEYFRAMES.schema)


def video_result(signal: Signal, keys: dict[str, Any], result: pd.DataFrame) -> pd.DataFrame:
    """The video's value from its keyframes' (a one-row frame in the runner's form): the pooled
    embedding, or per label the maximum score over keyframes with that keyframe's threshold,
    decision and time (in `detail`); an error when no keyframe has a value, and the retried error of
    a keyframe that has one (the refresh computes its keyframes again: a value of the others would stay)."""
    retried = [error for error in result["error"] if is_retried_error(error)]
    if retried:
        return _item_result(signal, keys, f"{retried[0]} (on a keyframe)", None)
    ok = result[result["status"] == STATUS_OK]
    if ok.empty:
        return _item_result(signal, keys, f"no keyframe has a value: {result['error'].iloc[0]}", None)
    if output_of(signal) == EMBEDDINGS:
        try:
            vector = pooled_embedding(list(ok["vector"]), list(ok["end_s"] - ok["start_s"]))
        except ValueError as e:  # shots of no length (timestamps too large for their differences), vectors cancelling out
            return _item_result(signal, keys, f"keyframes cannot be pooled: {e}", None)
        return _item_result(signal, keys, None, vector)
    by_label: dict[str, list[tuple[dict[str, Any], float, int]]] = {}
    for scores, time_s, index in zip(ok["scores"], ok["time_s"], ok["keyframe_index"]):
        for one in scores:
            by_label.setdefault(one["label"], []).append((one, float(time_s), int(index)))
    scores, where = [], {}
    for label, found in by_label.items():
        _, time_s = max_with_time([f[0]["score"] for f in found], [f[1] for f in found])
        best = next(f for f in found if f[1] == time_s)
        scores.append(best[0])
        where[label] = {"time_s": time_s, "keyframe_index": best[2]}
    detail = json.dumps({"max_over_keyframes": where, "keyframes": len(result)}, sort_keys=True)
    return pd.DataFrame({**{k: [v] for k, v in keys.items()}, "status": [STATUS_OK], "error": [None], "scores": [scores], "detail": [detail]})


def _item_result(signal: Signal, keys: dict[str, Any], error: str | None, value: Any) -> pd.DataFrame:
    """One item's row in the runner's form: its keys, status, error, the signal's columns."""
    return pd.DataFrame({
        **{k: [v] for k, v in keys.items()},
        "status": [STATUS_ERROR if error else STATUS_OK],
        "error": [error],
        **signal.result_columns([value]),
    })
