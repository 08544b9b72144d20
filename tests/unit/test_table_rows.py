"""Output-table rows built in Arrow on the executors (signals.table_rows, udfs.rows), no Spark."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pytest
import torch

from signals.base import ModelRef, SignalConfig
from signals.contracts import EMBEDDINGS, LABELS, STATUS_ERROR, STATUS_OK
from signals.decode import InputError
from signals.labels.base import Labeler, LabelScores
from signals.table_rows import RowStamp, output_of
from tests.unit.test_runner import FakeEmbedder, PaddedEmbedder, expected_vector, make_signal
from udfs.rows import output_rows

pytestmark = pytest.mark.usefixtures("empty_model_cache")

WHEN = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
INPUT_SCHEMA = pa.schema([("content_id", pa.string()), ("ds", pa.string()), ("input_hash", pa.string()), ("x", pa.int64())])


class ParityLabeler(Labeler):
    """x -> is_even 1/0 and big x/100; negative x is bad input."""

    input_kind: ClassVar = "text"
    input_columns: ClassVar = ("x",)
    labels = ("is_even", "big")
    default_thresholds: ClassVar = {"big": 0.5}

    def resource_key(self) -> Any:
        return ("parity",)

    def load_resources(self, device: torch.device) -> None:
        return None

    def prepare(self, row: Mapping[str, Any]) -> int:
        if row["x"] < 0:
            raise InputError("negative")
        return int(row["x"])

    def score(self, prepared: list[int]) -> list[LabelScores]:
        return [LabelScores({"is_even": float(x % 2 == 0), "big": x / 100}, detail=f"x={x}") for x in prepared]


def batches_of(xs: list[int], sizes: list[int]) -> list[pa.RecordBatch]:
    """Input batches as Spark hands them to `output_rows`: key columns and the input column x."""
    out, start = [], 0
    for size in sizes:
        chunk = xs[start : start + size]
        out.append(pa.RecordBatch.from_pydict({
            "content_id": [f"c{x:+04d}" for x in chunk], "ds": ["2026-11-20"] * size,
            "input_hash": [f"h{x}" for x in chunk], "x": chunk,
        }, schema=INPUT_SCHEMA))
        start += size
    return out


def test_embedding_rows_are_the_contracts_rows_with_error_rows_kept() -> None:
    signal = make_signal(batch_size=4)
    stamp = RowStamp.of(signal, "run-1", WHEN)
    rows = pa.Table.from_batches(list(output_rows(signal, stamp)(iter(batches_of([0, 1, -2, 3, 4], [5])))))
    assert rows.schema == EMBEDDINGS.schema
    by_id = {r["content_id"]: r for r in rows.to_pylist()}
    assert by_id["c-002"]["status"] == STATUS_ERROR and by_id["c-002"]["vector"] is None and "negative" in by_id["c-002"]["error"]
    for x in (0, 1, 3, 4):
        row = by_id[f"c{x:+04d}"]
        assert row["status"] == STATUS_OK and row["error"] is None and row["dim"] == 3 and row["input_hash"] == f"h{x}"
        np.testing.assert_allclose(row["vector"], expected_vector(x), rtol=1e-6)
    assert {(r["signal"], r["model_name"], r["model_version"], r["run_id"], r["computed_at"], r["ds"]) for r in by_id.values()} == {
        ("fake_embedding", "fake-model", "1", "run-1", WHEN, "2026-11-20")}


@pytest.mark.parametrize("cls", [FakeEmbedder, PaddedEmbedder], ids=["in order", "sorted by size"])
@pytest.mark.parametrize("sizes", [[3, 7, 1, 10], [21], [1] * 21, [0, 5, 0, 16]])
def test_each_row_keeps_its_own_key_whatever_the_batch_sizes(sizes: list[int], cls: type[FakeEmbedder]) -> None:
    xs = list(range(21))
    signal = make_signal(batch_size=4, cls=cls)
    rows = pa.Table.from_batches(list(output_rows(signal, RowStamp.of(signal, "r", WHEN))(iter(batches_of(xs, sizes))))).to_pylist()
    assert [r["content_id"] for r in rows] == [f"c{x:+04d}" for x in xs]
    for x, row in zip(xs, rows):
        assert row["input_hash"] == f"h{x}"
        np.testing.assert_allclose(row["vector"], expected_vector(x), rtol=1e-6)


def test_label_rows_are_one_per_label_and_one_for_a_failed_item() -> None:
    labeler = ParityLabeler(SignalConfig("parity", ModelRef("parity-rules", "2"), 2, "cpu", {})).load()
    assert output_of(labeler) is LABELS
    rows = pa.Table.from_batches(list(output_rows(labeler, RowStamp.of(labeler, "run-2", WHEN))(iter(batches_of([4, -1, 75], [2, 1])))))
    assert rows.schema == LABELS.schema
    got = [(r["content_id"], r["label"], r["score"], r["threshold"], r["decision"], r["detail"], r["status"]) for r in rows.to_pylist()]
    assert got == [
        ("c+004", "is_even", 1.0, None, None, "x=4", STATUS_OK),
        ("c+004", "big", 0.04, 0.5, False, "x=4", STATUS_OK),
        ("c-001", None, None, None, None, None, STATUS_ERROR),
        ("c+075", "is_even", 0.0, None, None, "x=75", STATUS_OK),
        ("c+075", "big", 0.75, 0.5, True, "x=75", STATUS_OK),
    ]


class ShortBatchParity(ParityLabeler):
    """Gives one score fewer than its batch's rows (from two rows on): a bug of the signal's own."""

    def score(self, prepared: list[int]) -> list[LabelScores]:
        out = super().score(prepared)
        return out[:-1] if len(prepared) > 1 else out


class NoneScoreParity(ParityLabeler):
    """Scores x == 3 as None: a bug of the signal's own."""

    def score(self, prepared: list[int]) -> list[LabelScores]:
        return [LabelScores({"is_even": None, "big": 0.0}) if x == 3 else s for x, s in zip(prepared, super().score(prepared), strict=True)]


def test_a_labeler_giving_fewer_scores_or_one_none_fails_rows_not_the_batch_nor_silently() -> None:
    """Found in review: `zip` dropped the rows past the scores, which stood as ok items without a
    label row; a None score raised TypeError out of the check, failing the whole batch."""
    for cls, wanted in ((ShortBatchParity, set()), (NoneScoreParity, {"c+003"})):
        labeler = cls(SignalConfig("parity", ModelRef("parity-rules", "2"), 4, "cpu", {})).load()
        rows = pa.Table.from_batches(list(output_rows(labeler, RowStamp.of(labeler, "run-3", WHEN))(iter(batches_of(list(range(6)), [6])))))
        failed = {r["content_id"] for r in rows.to_pylist() if r["status"] == STATUS_ERROR}
        assert failed == wanted, cls.__name__
        labelled = {(r["content_id"], r["label"]) for r in rows.to_pylist() if r["status"] == STATUS_OK}
        assert labelled == {(f"c+{x:03d}", label) for x in range(6) if f"c+{x:03d}" not in wanted for label in ("is_even", "big")}, cls.__name__


def test_an_image_uri_that_is_not_utf8_is_its_rows_error_not_a_failed_batch(tmp_path) -> None:
    """A corpus string column holds whatever bytes its files hold, and Spark hands them to Arrow
    unchecked: an `image_uri` that is not valid UTF-8 failed the conversion of its whole batch
    (the task, then the job). The workers now get URIs as bytes (`udfs.columns.input_columns`,
    as this batch holds them): a bad one is that row's error and the row beside it is fetched."""
    import io
    from dataclasses import replace

    from PIL import Image

    from signals.fetch import FetchPolicy
    from signals.labels.quality import ImageQualityLabeler

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buf, format="PNG")
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    config = SignalConfig("image_quality", ModelRef("image_quality", "1"), 2, "cpu", {})
    labeler = ImageQualityLabeler(replace(config, fetch=FetchPolicy(file_roots=(str(tmp_path),)))).load()
    uris = pa.array([f"file://{tmp_path}/a.png".encode(), f"file://{tmp_path}/\xff.png".encode("latin-1")], pa.binary())
    batch = pa.RecordBatch.from_arrays(
        [pa.array(["c1", "c2"]), pa.array(["2026-11-20"] * 2), pa.array(["h1", "h2"]), pa.nulls(2, pa.binary()), uris],
        names=["content_id", "ds", "input_hash", "image", "image_uri"])
    rows = pa.Table.from_batches(list(output_rows(labeler, RowStamp.of(labeler, "r", WHEN))(iter([batch])))).to_pylist()
    status = {(r["content_id"], r["status"]) for r in rows}
    assert status == {("c1", STATUS_OK), ("c2", STATUS_ERROR)}
    (error,) = {r["error"] for r in rows if r["content_id"] == "c2"}
    assert error.startswith("image_uri is not valid UTF-8 (byte ")
