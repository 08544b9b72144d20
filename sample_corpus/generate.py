"""Deterministic sample corpus of pins (image + title + description) with ground truth.

The embedding/labelling job needs realistic input that runs offline and in tests, so the
corpus is built from real photos that ship inside installed wheels (scikit-image's
``skimage.data`` and scikit-learn's sample images: sample_corpus/photos.py).  Items come in
two steps:

- an ``original`` is a new picture: a random window of one of those photos (35-75% of each
  side; 45-100% for texture-like photos, so their scale varies too), resized to a random
  output size (longer side 400-512 px) and saved as JPEG.  Windows are chosen so that
  originals of the same photo look different (their 8x8 mean hashes differ in many bits),
  and photos with too little to frame differently (textures, the moon, a starfield) are
  also shot in random uneven light: originals are different pins, never duplicates of each
  other.  Their hashes are also chosen to survive copying, so copies stay close to them
  (sample_corpus/originals.py).
- every other item with a picture derives from one specific, earlier original (a random
  one): re-encoded, cropped, blurred, shrunk, overlaid with text or a tiled watermark,
  duplicated, stored in an unusual colour mode, or broken (truncated, lying header).  The
  rest are broken images with no picture at all (noise, zero bytes, text, NULL).  The kinds and
  how each is built: sample_corpus/kinds.py.

A parallel truth table records what was done so the job's labels (blur, low resolution,
text overlay, duplicates, bad images) can be checked against it.  Titles and descriptions
also carry edge cases (empty, null, very long, odd unicode, whitespace only) and spam
(sample_corpus/texts.py).  This module plans the items, draws their timestamps, assembles
the corpus and its truth and writes them to the lakehouse.

Duplicate truth.  ``source_id`` is the original an item derives from (null for originals and
for bad images without a picture).  ``dup_relation`` says how it relates to that source:

- ``copy``: the same picture, re-encoded, resized, recoloured or trimmed by at most 5% per
  side (exact_duplicate, near_duplicate, recompress, rescale, grayscale, cmyk, rgba, palette,
  gray16).  A copy's ``dup_group`` is its source's content_id.
- ``edit``: derived but not a plain copy (crop of 70-90% per side, flip, blur, low_res,
  text_overlay, watermark, truncated, huge_header).  Its ``dup_group`` is its own content_id.
- ``none``: originals and bad images without a picture; ``dup_group`` is the own content_id.

So an original and all its copies form one ``dup_group``; every other item is alone in its
group, and no two items of different groups have byte-identical images (bad images without
a picture aside: several are empty or the same error text).  For near-duplicate evaluation,
pairs in the same dup_group are duplicates; pairs in different groups that share a root
(``source_id``, or the own content_id of an original) involve an edit of that original and
are ambiguous (an edit and its source, or two edits / an edit and a copy of one original):
ignore them; all other pairs are distinct pictures, including two originals of the same
photo.  ``duplicate_of`` keeps its narrower meaning: the source of an exact_duplicate or
near_duplicate item (the items flagged is_exact_duplicate / is_near_duplicate), else null.

Everything random comes from ``numpy.random.default_rng`` seeded by ``seed``, so the same
arguments give byte-identical tables.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from sample_corpus.draws import pick
from sample_corpus.kinds import COPY, EDIT, KIND_BY_NAME, KINDS, Source
from sample_corpus.originals import original
from sample_corpus.photos import base_caption, photo_pool, subject
from sample_corpus.texts import TEXT_WEIGHTS, pin_text, spam_text
from signals.contracts import CORPUS, UTC_MICROS, keeps_rows, lakehouse_table

CORPUS_SCHEMA = CORPUS.schema  # the job's input contract (signals.contracts)

TRUTH_SCHEMA = pa.schema(
    [
        pa.field("content_id", pa.string(), nullable=False),
        pa.field("base_id", pa.string()),  # photo the picture comes from; null without a picture
        pa.field("variant", pa.string(), nullable=False),  # a KINDS name
        pa.field("params", pa.string(), nullable=False),  # JSON of what the variant did
        # exact_duplicate / near_duplicate only: the original it duplicates (== source_id)
        pa.field("duplicate_of", pa.string()),
        # the earlier original this item derives from; null for originals and bad images
        # without a picture (corrupt, empty, not_image, null)
        pa.field("source_id", pa.string()),
        # copies: their source original's content_id; everything else: its own content_id.
        # Same dup_group = same picture (true near-duplicates).
        pa.field("dup_group", pa.string(), nullable=False),
        # "copy" (same picture as source_id), "edit" (derived from source_id but not a plain
        # copy: ambiguous against its source's dup_group and against other items derived
        # from the same source; evaluations ignore such pairs) or "none" (no source)
        pa.field("dup_relation", pa.string(), nullable=False),
        pa.field("is_blurred", pa.bool_(), nullable=False),
        pa.field("is_low_res", pa.bool_(), nullable=False),
        pa.field("has_text_overlay", pa.bool_(), nullable=False),
        pa.field("is_exact_duplicate", pa.bool_(), nullable=False),
        pa.field("is_near_duplicate", pa.bool_(), nullable=False),
        pa.field("is_bad_image", pa.bool_(), nullable=False),
        pa.field("bad_image_kind", pa.string()),
        pa.field("text_kind", pa.string(), nullable=False),
        # the title and description were rewritten as spam (SPAM_SHARE of "normal" texts)
        pa.field("is_spam_text", pa.bool_(), nullable=False),
    ]
)
FLAG_COLUMNS: tuple[str, ...] = (
    "is_blurred", "is_low_res", "has_text_overlay", "is_exact_duplicate", "is_near_duplicate", "is_bad_image",
)
UNIQUE_TRIES = 20  # edits are redrawn (with the item's generator) until their bytes are new

# Spam texts, for the spam_text training task (sample_corpus/texts.py): a share of the "normal"
# texts, chosen after the rest of the plan and written with each item's own generator after its
# other draws, so every other item, image, day and truth column is what it was before spam existed.
SPAM_SHARE = 0.2

# --------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------


def _plan(rng: np.random.Generator, n: int, weights: dict[str, float], first: str) -> list[str]:
    """Kinds for n items: ``first`` leads, every other kind appears at least once when n
    allows, the rest are drawn by weight, then all but the first are shuffled.

    Leading with an original guarantees that every derived item has an earlier source.
    """
    names = list(weights)
    share = np.array([weights[name] for name in names])
    extra = rng.choice(len(names), size=max(0, n - len(names)), p=share / share.sum())
    rest = [name for name in names if name != first] + [names[i] for i in extra]
    return ([first] + [rest[i] for i in rng.permutation(len(rest))])[:n]


def _timestamps(rng: np.random.Generator, n: int, end_date: dt.date, days: int) -> tuple[np.ndarray, np.ndarray]:
    """created_at (microseconds since epoch, UTC) spread over the ``days`` days ending at
    end_date, non-decreasing with content_id (so sources are also older in time);
    updated_at is either created_at or a later moment inside the window.
    """
    window_end = dt.datetime.combine(end_date + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    end_us = int(window_end.timestamp()) * 1_000_000
    start_us = end_us - days * 86_400 * 1_000_000
    created = np.sort(rng.integers(start_us, end_us, size=n))
    later = rng.integers(created, end_us)
    updated = np.where(rng.random(n) < 0.5, created, later)
    return created, updated


def _day(micros: int) -> str:
    """YYYY-MM-DD (UTC) of a microsecond timestamp; the ds partition value."""
    return dt.datetime.fromtimestamp(micros // 1_000_000, tz=dt.UTC).date().isoformat()


def _pick_source(rng: np.random.Generator, originals: Sequence[int], copies: Counter[int], last_copy: bool) -> int:
    """A random earlier original to derive from.

    ``last_copy``: the plan's last copy item; if no original has two copies yet, it goes to
    an original that has one, so every corpus holds a dup_group of three or more.
    """
    candidates = list(originals)
    if last_copy and max(copies.values(), default=0) < 2:
        candidates = [j for j in originals if copies[j] == 1] or candidates
    return pick(rng, candidates)


def generate_corpus(
    n_items: int = 480,
    seed: int = 7,
    end_date: dt.date = dt.date(2026, 11, 20),
    days: int = 7,
    photos: str | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Return (corpus, truth) with exactly n_items rows each, same content_id order.

    Originals cycle through the base photos (and those of the folder `photos`); every other item with a picture derives from a
    random earlier original (and so shares its base).  The plan always leads with an
    original.  Each item draws from its own generator seeded by (seed, index), so changing
    one transform does not reshuffle every other item.
    """
    rng = np.random.default_rng(seed)
    kinds = _plan(rng, n_items, {kind.name: kind.weight for kind in KINDS}, first="original")
    text_kinds = _plan(rng, n_items, TEXT_WEIGHTS, first="normal")
    created, updated = _timestamps(rng, n_items, end_date, days)
    spam = (rng.random(n_items) < SPAM_SHARE) & (np.array(text_kinds) == "normal")
    copy_items = [i for i, name in enumerate(kinds) if KIND_BY_NAME[name].relation == COPY]

    ids = [f"pin-{i:06d}" for i in range(n_items)]
    images: list[bytes | None] = []
    base_ids: list[str | None] = []
    originals: list[int] = []  # indices of the originals so far: the possible sources
    pool = photo_pool(photos)
    hashes: dict[str, list[np.ndarray]] = {base_id: [] for base_id in pool}  # per photo
    copies: Counter[int] = Counter()  # copies made of each original so far
    seen: set[bytes] = set()  # sha256 of every image so far
    truth: dict[str, list[Any]] = {field.name: [] for field in TRUTH_SCHEMA}
    titles: list[str | None] = []
    descriptions: list[str | None] = []

    for i, (name, text_kind) in enumerate(zip(kinds, text_kinds)):
        kind = KIND_BY_NAME[name]
        item_rng = np.random.default_rng([seed, i])
        source: int | None = None
        if kind.build is None:  # an original
            base_id = pool[len(originals) % len(pool)]
            image, params, mean_hash = original(item_rng, base_id, hashes[base_id])
            hashes[base_id].append(mean_hash)
            originals.append(i)
        elif kind.derived:
            source = _pick_source(item_rng, originals, copies, bool(copy_items) and i == copy_items[-1])
            base_id, src = base_ids[source], Source(images[source])
            for _ in range(UNIQUE_TRIES if kind.relation == EDIT else 1):
                image, params = kind.build(item_rng, src)
                if image is None or hashlib.sha256(image).digest() not in seen:
                    break  # an edit that repeats an earlier one (same flip, same size) is redrawn
            if kind.relation == COPY:
                copies[source] += 1
        else:
            base_id = None
            image, params = kind.build(item_rng, None)
        if image is not None:
            seen.add(hashlib.sha256(image).digest())

        caption = base_caption(base_id) if base_id else "Untitled pin"
        about = subject(base_id) if base_id else "this picture"
        title, description = pin_text(item_rng, text_kind, caption, about)
        if spam[i]:
            title, description = spam_text(item_rng, caption, about)
        images.append(image)
        base_ids.append(base_id)
        titles.append(title)
        descriptions.append(description)

        source_id = ids[source] if source is not None else None
        row = {
            "content_id": ids[i], "base_id": base_id, "variant": name,
            "params": json.dumps(params, sort_keys=True, ensure_ascii=False),
            "duplicate_of": source_id if kind.group == "duplicate" else None,
            "source_id": source_id,
            "dup_group": source_id if kind.relation == COPY else ids[i],
            "dup_relation": kind.relation,
            **{column: column == kind.flag for column in FLAG_COLUMNS},
            "bad_image_kind": name if kind.group == "bad" else None, "text_kind": text_kind,
            "is_spam_text": bool(spam[i]),
        }
        for column, value in row.items():
            truth[column].append(value)

    corpus = pa.table(
        {
            "content_id": ids,
            "image": images,
            "title": titles,
            "description": descriptions,
            "created_at": pa.array(created, UTC_MICROS),
            "updated_at": pa.array(updated, UTC_MICROS),
            "ds": [_day(int(us)) for us in created],
        },
        schema=CORPUS_SCHEMA,
    )
    return corpus, pa.table(truth, schema=TRUTH_SCHEMA)



TRUTH_TABLE = "corpus_truth"
MARKER_DEFAULTS = {"videos": "false", "photos": ""}  # how a marker written before these keys existed reads


def truth_root(lakehouse_root: str) -> str:
    """The sample corpus truth table of the lakehouse, or a FileNotFoundError saying where it comes
    from: only `make-corpus` writes it (a lakehouse without it holds another corpus, or is mistyped)."""
    from deltalake import DeltaTable

    root = lakehouse_table(lakehouse_root, TRUTH_TABLE)
    if not DeltaTable.is_deltatable(root):
        raise FileNotFoundError(f"no sample corpus truth at {root}: it is written with the sample corpus (content-signals "
                                "make-corpus); or check --profile/--set lakehouse")
    return root


def write_sample_corpus(lakehouse_root: str, n_items: int, seed: int, videos: bool = False, photos: str | None = None) -> bool:
    """Write the corpus and truth tables under `lakehouse_root`; False if this exact corpus is
    already there (same generator, size, seed, videos and folder of photos), so repeated demos do not rewrite it.
    With `videos`, the sample videos (sample_corpus/videos.py) are extra items in a `video` column,
    with their own truth table. The corpus is committed last: its commit's marker says the truths are
    written, so a run killed between the tables' commits is written again by the next."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    root = lakehouse_table(lakehouse_root, CORPUS.name)
    marker = {"generator": __name__, "n_items": str(n_items), "seed": str(seed), "videos": str(videos).lower(), "photos": photos or ""}
    if DeltaTable.is_deltatable(root):
        # the newest commit that wrote rows: `maintain` vacuums the sample corpus and may set its log retention, which change none
        written = next((c for c in DeltaTable(root).history() if not keeps_rows(c)), {})
        if all(written.get(k, MARKER_DEFAULTS.get(k)) == v for k, v in marker.items()):
            return False
    corpus, truth = generate_corpus(n_items=n_items, seed=seed, photos=photos)
    props = CommitProperties(custom_metadata=marker)
    overwrite = {"mode": "overwrite", "schema_mode": "overwrite", "commit_properties": props}
    if videos:
        from sample_corpus.videos import VIDEO_TRUTH_TABLE, with_videos

        corpus, video_truth = with_videos(corpus, seed)
        write_deltalake(lakehouse_table(lakehouse_root, VIDEO_TRUTH_TABLE), video_truth, **overwrite)
    write_deltalake(lakehouse_table(lakehouse_root, TRUTH_TABLE), truth, **overwrite)
    write_deltalake(root, corpus, partition_by=list(CORPUS.partition_by), **overwrite)
    return True
