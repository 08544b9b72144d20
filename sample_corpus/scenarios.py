"""Days that should raise an alert, appended to the sample corpus on demand (seeded): what a
corpus feed or an encoder does on a bad day, for the monitoring to catch.

- `normal`: a day drawn like the others (it should raise nothing);
- `thumbnails`: every picture shrunk to a thumbnail of 32-64 px (a feed sending previews);
- `truncated`: every image cut to 20-60% of its bytes (a broken encoder);
- `language`: titles and descriptions in German, Spanish and French (a new market's feed).

Each day is drawn like an ordinary day (items picked at random from a week's draw of
`generate_corpus`), then changed; its items get ids of
their own (`<scenario>-<day>-<n>`), so it only adds to the corpus.

    content-signals make-corpus --scenario thumbnails --day 2026-11-21
"""
from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from sample_corpus.generate import generate_corpus
from sample_corpus.photos import SUBJECTS
from signals.contracts import CORPUS, lakehouse_table

SCENARIOS = ("normal", "thumbnails", "truncated", "language")
DRAW_DAYS = 7
SENTENCES = {
    "de": ("Ein {adj} Foto von {subject}, heute entdeckt.", "Ich habe dieses Bild gespeichert, weil es so {adj} ist.",
           "Wunderschöne Aufnahme, perfekt für meine Sammlung.", "Das Licht auf diesem Bild ist wirklich {adj}."),
    "es": ("Una foto {adj} de {subject} que encontré hoy.", "Guardé esta imagen porque me parece muy {adj}.",
           "Una fotografía preciosa, perfecta para mi colección.", "La luz de esta imagen es realmente {adj}."),
    "fr": ("Une photo {adj} de {subject}, trouvée aujourd'hui.", "J'ai gardé cette image parce qu'elle est très {adj}.",
           "Une très belle photographie, parfaite pour ma collection.", "La lumière de cette image est vraiment {adj}."),
}
ADJECTIVES = {"de": ("schön", "klar", "ruhig", "lebendig"), "es": ("bonita", "clara", "tranquila", "viva"),
              "fr": ("belle", "claire", "calme", "vivante")}


def _thumbnail(data: bytes | None, rng: np.random.Generator) -> bytes | None:
    """The picture at a long side of 32-64 px, as a JPEG; what does not decode stays as it is."""
    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception:  # noqa: BLE001 - a bad image of the draw stays bad
        return data
    image.thumbnail((int(rng.integers(32, 65)),) * 2)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _truncated(data: bytes | None, rng: np.random.Generator) -> bytes | None:
    return None if data is None else data[: max(1, int(len(data) * rng.uniform(0.2, 0.6)))]


def _foreign_text(rng: np.random.Generator) -> tuple[str, str]:
    language = str(rng.choice(list(SENTENCES)))
    subject = str(rng.choice(list(SUBJECTS.values())))
    sentences = [str(rng.choice(SENTENCES[language])).format(adj=rng.choice(ADJECTIVES[language]), subject=subject) for _ in range(3)]
    return sentences[0].rstrip("."), " ".join(sentences[1:])


def scenario_day(scenario: str, day: str, n_items: int, seed: int) -> pa.Table:
    """`n_items` corpus rows of `day` (YYYY-MM-DD) in the given scenario, the same for the same arguments."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    # a draw of DRAW_DAYS days' items, of which n_items chosen at random: a small draw of its own
    # would start with the first photos' originals and their edits, unlike any ordinary day
    drawn, _ = generate_corpus(n_items=n_items * DRAW_DAYS, seed=seed, end_date=dt.date.fromisoformat(day), days=DRAW_DAYS)
    chosen = np.random.default_rng(seed).choice(drawn.num_rows, n_items, replace=False)  # the same items in every scenario
    corpus = drawn.take(np.sort(chosen))
    rng = np.random.default_rng([seed, SCENARIOS.index(scenario)])
    columns = {name: corpus[name].to_pylist() for name in corpus.column_names}
    start = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), tzinfo=dt.UTC)
    for name in ("created_at", "updated_at"):  # the same time of day, on the scenario's day
        columns[name] = [None if t is None else start + (t - t.replace(hour=0, minute=0, second=0, microsecond=0)) for t in columns[name]]
    columns["ds"] = [day] * n_items
    columns["content_id"] = [f"{scenario}-{day}-{i:04d}" for i in range(n_items)]
    if scenario == "thumbnails":
        columns["image"] = [_thumbnail(data, rng) for data in columns["image"]]
    elif scenario == "truncated":
        columns["image"] = [_truncated(data, rng) for data in columns["image"]]
    elif scenario == "language":
        columns["title"], columns["description"] = (list(t) for t in zip(*(_foreign_text(rng) for _ in range(n_items))))
    return pa.table(columns, schema=CORPUS.schema)


def next_day(corpus: pa.Table) -> str:
    """The day after the corpus's last."""
    return (dt.date.fromisoformat(pc.max(corpus["ds"]).as_py()) + dt.timedelta(days=1)).isoformat()


def write_normal_days(lakehouse_root: str, days: int, items_per_day: int, seed: int, end_date: dt.date = dt.date(2026, 11, 20)) -> None:
    """A sample corpus of `days` ordinary days ending at `end_date`, about `items_per_day` items
    each (the monitoring evaluation's baseline), in place of any corpus there."""
    from deltalake import write_deltalake

    corpus, _ = generate_corpus(n_items=days * items_per_day, seed=seed, end_date=end_date, days=days)
    write_deltalake(lakehouse_table(lakehouse_root, CORPUS.name), corpus, mode="overwrite", partition_by=list(CORPUS.partition_by))


def append_scenario_day(lakehouse_root: str, scenario: str, n_items: int, seed: int, day: str | None = None) -> str:
    """Append a scenario's day (default: the day after the corpus's last) to the sample corpus
    table of the lakehouse, in one commit; returns the day."""
    from deltalake import DeltaTable, write_deltalake

    root = lakehouse_table(lakehouse_root, CORPUS.name)
    if not DeltaTable.is_deltatable(root):
        raise FileNotFoundError(f"no sample corpus at {root}: content-signals make-corpus first")
    day = day or next_day(DeltaTable(root).to_pyarrow_dataset().to_table(columns=["ds"]))
    rows = scenario_day(scenario, day, n_items, seed)
    write_deltalake(root, rows, mode="append", partition_by=list(CORPUS.partition_by))
    return day
