"""The analysts' Lakehouse lists its tables through pyarrow's filesystems, so a lakehouse named by
a URI (s3://, gs://, file://) lists as a local folder does."""
from __future__ import annotations

import pyarrow as pa
from deltalake import write_deltalake

from lake.lakehouse import Lakehouse


def test_tables_of_a_folder_and_of_a_uri(tmp_path) -> None:
    for name in ("embeddings", "runs"):
        write_deltalake(str(tmp_path / name), pa.table({"x": [1]}))
    (tmp_path / "not_a_table").mkdir()
    (tmp_path / "_registry").mkdir()
    assert Lakehouse(str(tmp_path)).tables() == ["embeddings", "runs"]
    assert Lakehouse(f"file://{tmp_path}", registry_uri="sqlite:///unused.db").tables() == ["embeddings", "runs"]


def test_a_lakehouse_that_does_not_exist_has_no_tables(tmp_path) -> None:
    assert Lakehouse(str(tmp_path / "missing")).tables() == []
