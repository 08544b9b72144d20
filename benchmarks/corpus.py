"""Generated corpora for the benchmark, written as Delta tables like `make demo` writes them, and the
same items with large photos or with their images by URI (benchmarks.uri)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from signals.contracts import CORPUS

LARGE_IMAGE = (4000, 3000)  # width, height: a phone photo's pixels


def write_corpus(lakehouse: Path, n_items: int, seed: int = 7, photos: str | None = None) -> dict[str, float]:
    """The sample corpus (sample_corpus.generate, real photos, the folder `photos`' too, and every
    bad-input kind) of `n_items` as `<lakehouse>/corpus`; returns what it holds."""
    from sample_corpus.generate import generate_corpus

    corpus, _ = generate_corpus(n_items=n_items, seed=seed, photos=photos)
    write_corpus_table(lakehouse, corpus)
    images = corpus["image"]
    return {"items": corpus.num_rows, "image_mb": round(pc.sum(pc.binary_length(images)).as_py() / 2**20, 1),
            "null_images": images.null_count, "days": len(pc.unique(corpus["ds"]))}


def write_corpus_table(lakehouse: Path, corpus: pa.Table) -> None:
    """`corpus` as the Delta table `<lakehouse>/corpus`, partitioned as the jobs expect."""
    from deltalake import write_deltalake

    write_deltalake(str(lakehouse / CORPUS.name), corpus, mode="overwrite", partition_by=list(CORPUS.partition_by))


def copy_lakehouse(corpus_lakehouse: Path, dest: Path) -> Path:
    """A new lakehouse at `dest` holding a copy of the corpus table (jobs write next to it)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(corpus_lakehouse / CORPUS.name, dest / CORPUS.name)
    return dest


def _new_picture(image: bytes | None) -> bytes | None:
    """The same picture encoded anew (other bytes, so not a repin the refresh could copy); an
    image that does not decode stays as it is."""
    from PIL import Image, UnidentifiedImageError

    if image is None:
        return None
    try:
        with Image.open(io.BytesIO(image)) as picture:
            out = io.BytesIO()
            picture.convert("RGB").save(out, "JPEG", quality=87)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return image
    return out.getvalue()


def add_new_items(corpus_root: str, fraction: float = 0.01) -> list[str]:
    """Append `fraction` of the corpus as new items in a new day partition, the day after the
    corpus's last: how a daily corpus grows. Each is new content (an existing picture encoded
    anew, its title marked with the day), so a refresh computes it rather than copying a
    committed row of the same input."""
    import datetime as dt

    from deltalake import DeltaTable, write_deltalake

    corpus = DeltaTable(corpus_root).to_pyarrow_table().sort_by("content_id")
    add = max(1, round(corpus.num_rows * fraction))
    days = len(pc.unique(corpus["ds"]))
    new = corpus.slice((30 + add * days) % max(1, corpus.num_rows - add), add)  # other pictures each day: not the last day's again
    day = (dt.date.fromisoformat(pc.max(corpus["ds"]).as_py()) + dt.timedelta(days=1)).isoformat()
    ids = pa.array([f"pin-{day}-{i:06d}" for i in range(add)], pa.string())  # new ids every day
    new = new.set_column(new.schema.get_field_index("content_id"), corpus.schema.field("content_id"), ids)
    new = new.set_column(new.schema.get_field_index("ds"), corpus.schema.field("ds"), pa.array([day] * add, pa.string()))
    images = pa.array([_new_picture(image) for image in new["image"].to_pylist()], pa.binary())
    new = new.set_column(new.schema.get_field_index("image"), corpus.schema.field("image"), images)
    titles = pa.array([None if t is None else f"{t} ({day})" for t in new["title"].to_pylist()], pa.string())
    new = new.set_column(new.schema.get_field_index("title"), corpus.schema.field("title"), titles)
    write_deltalake(corpus_root, new.cast(corpus.schema), mode="append", partition_by=list(CORPUS.partition_by))
    return ids.to_pylist()


def large_jpeg(seed: int, size: tuple[int, int] = LARGE_IMAGE) -> bytes:
    """A photo-sized JPEG (smooth colour under grain: megabytes, like a phone's photo), for corpora
    that must hold large images beside the sample corpus's small ones."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (height // 100, width // 100, 3), dtype=np.uint8)).resize(size, Image.BICUBIC))
    grain = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=92)
    return out.getvalue()


def with_large_images(corpus: pa.Table, every: int, images: list[bytes]) -> pa.Table:
    """`corpus` with the image of every `every`-th item (by position, from the first) replaced by
    one of `images` in turn; items without an image keep none."""
    column = corpus["image"].to_pylist()
    for count, i in enumerate(range(0, len(column), every)):
        if column[i] is not None:
            column[i] = images[count % len(images)]
    return corpus.set_column(corpus.schema.get_field_index("image"), corpus.schema.field("image"), pa.array(column, pa.binary()))


def by_uri(corpus: pa.Table, base: str, prefix: str) -> tuple[pa.Table, dict[str, bytes]]:
    """The same items with their images by URI: each image moves to the object `<prefix>/<content_id>`
    and the item's `image` becomes null, its `image_uri` `<base>/<key>`; an item without an image
    has no URI either. Returns the table and the objects (key -> bytes) to serve at `base`."""
    objects: dict[str, bytes] = {}
    uris: list[str | None] = []
    for content_id, image in zip(corpus["content_id"].to_pylist(), corpus["image"].to_pylist()):
        if image is None:
            uris.append(None)
            continue
        key = f"{prefix}/{content_id}"
        objects[key] = image
        uris.append(f"{base}/{key}")
    index = corpus.schema.get_field_index("image")
    table = corpus.set_column(index, corpus.schema.field("image"), pa.nulls(corpus.num_rows, pa.binary()))
    return table.append_column(pa.field("image_uri", pa.string()), pa.array(uris, pa.string())), objects


def with_repins(corpus: pa.Table, fraction: float, seed: int = 7) -> pa.Table:
    """`corpus` with a seeded `fraction` of its items made repins: each takes the image, title and
    description of another item (an original, never itself a repin), keeping its own id and day."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(corpus.num_rows)
    repins = order[: round(corpus.num_rows * fraction)]
    originals = order[len(repins):]
    sources = np.arange(corpus.num_rows)
    sources[repins] = rng.choice(originals, len(repins))
    picked = corpus.take(pa.array(sources))
    for name in ("image", "title", "description"):
        corpus = corpus.set_column(corpus.schema.get_field_index(name), corpus.schema.field(name), picked[name])
    return corpus
