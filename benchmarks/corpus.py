"""Generated corpora for the benchmark, written as Delta tables like `make demo` writes them."""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from signals.contracts import CORPUS


def write_corpus(lakehouse: Path, n_items: int, seed: int = 7) -> dict[str, float]:
    """The sample corpus (sample_corpus.generate, real photos and every bad-input kind) of `n_items`
    as `<lakehouse>/corpus`; returns what it holds."""
    from deltalake import write_deltalake

    from sample_corpus.generate import generate_corpus

    corpus, _ = generate_corpus(n_items=n_items, seed=seed)
    write_deltalake(str(lakehouse / CORPUS.name), corpus, mode="overwrite", partition_by=list(CORPUS.partition_by))
    images = corpus["image"]
    return {"items": corpus.num_rows, "image_mb": round(pc.sum(pc.binary_length(images)).as_py() / 2**20, 1),
            "null_images": images.null_count, "days": len(pc.unique(corpus["ds"]))}


def copy_lakehouse(corpus_lakehouse: Path, dest: Path) -> Path:
    """A new lakehouse at `dest` holding a copy of the corpus table (jobs write next to it)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(corpus_lakehouse / CORPUS.name, dest / CORPUS.name)
    return dest


def add_new_items(corpus_root: str, fraction: float = 0.01) -> list[str]:
    """Append `fraction` of the corpus as new items (existing images and texts under new ids)
    in a new day partition, the day after the corpus's last: how a daily corpus grows."""
    import datetime as dt

    from deltalake import DeltaTable, write_deltalake

    corpus = DeltaTable(corpus_root).to_pyarrow_table().sort_by("content_id")
    add = max(1, round(corpus.num_rows * fraction))
    new = corpus.slice(min(30, corpus.num_rows - add), add)
    day = (dt.date.fromisoformat(pc.max(corpus["ds"]).as_py()) + dt.timedelta(days=1)).isoformat()
    ids = pa.array([f"pin-{day}-{i:06d}" for i in range(add)], pa.string())  # new ids every day
    new = new.set_column(new.schema.get_field_index("content_id"), corpus.schema.field("content_id"), ids)
    new = new.set_column(new.schema.get_field_index("ds"), corpus.schema.field("ds"), pa.array([day] * add, pa.string()))
    write_deltalake(corpus_root, new.cast(corpus.schema), mode="append", partition_by=list(CORPUS.partition_by))
    return ids.to_pylist()
