"""The scenario days of the sample corpus: seeded, changed as they say, and appended to the corpus."""
from __future__ import annotations

import io

import pytest
from deltalake import DeltaTable
from PIL import Image

from lake import upkeep
from sample_corpus.generate import TRUTH_TABLE, generate_corpus, write_sample_corpus
from sample_corpus.scenarios import SENTENCES, append_scenario_day, scenario_day
from tests.killed import run_killed


def _decodes(data: bytes | None) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except Exception:  # noqa: BLE001
        return None


def test_a_scenario_day_is_the_same_for_the_same_seed_and_of_its_day() -> None:
    a, b = scenario_day("thumbnails", "2026-11-21", 12, 3), scenario_day("thumbnails", "2026-11-21", 12, 3)
    assert a.equals(b)
    assert set(a["ds"].to_pylist()) == {"2026-11-21"}
    assert a["content_id"].to_pylist()[0] == "thumbnails-2026-11-21-0000"


def test_each_scenario_changes_what_it_says() -> None:
    normal = scenario_day("normal", "2026-11-21", 16, 5)
    thumbs = scenario_day("thumbnails", "2026-11-21", 16, 5)
    truncated = scenario_day("truncated", "2026-11-21", 16, 5)
    foreign = scenario_day("language", "2026-11-21", 16, 5)
    decoded = [_decodes(d) for d in thumbs["image"].to_pylist()]
    normal_decoded = [_decodes(d) for d in normal["image"].to_pylist()]
    assert all(max(i.size) <= 64 for i in decoded if i is not None)
    assert sum(i is not None for i in decoded) == sum(i is not None for i in normal_decoded)
    assert all(_decodes(d) is None for d in truncated["image"].to_pylist())
    sentences = {s.split(" ")[0] for by_language in SENTENCES.values() for s in by_language}
    assert all(t.split(" ")[0] in sentences for t in foreign["title"].to_pylist())
    assert foreign["image"].equals(normal["image"])


def test_the_sample_corpus_is_not_written_again_after_a_vacuum(tmp_path) -> None:
    """`maintain` vacuums the sample corpus; the demo then found its commit marker gone from the
    newest commit and rewrote every file, so the next refresh compared the whole corpus (found in review)."""
    assert write_sample_corpus(str(tmp_path), 60, 7)
    table = DeltaTable(str(tmp_path / "corpus"))
    (tmp_path / "corpus" / "orphan.parquet").write_bytes(b"never committed")
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True)
    version = DeltaTable(str(tmp_path / "corpus")).version()
    assert not write_sample_corpus(str(tmp_path), 60, 7)
    assert DeltaTable(str(tmp_path / "corpus")).version() == version
    assert write_sample_corpus(str(tmp_path), 60, 8)  # another corpus: written


def test_the_sample_corpus_is_not_written_again_after_maintains_property_commit(tmp_path) -> None:
    """Found in review: `maintain` also commits table properties to the sample corpus (then a longer log retention,
    now `lake.upkeep.set_upkeep_properties`), and the demo took that commit, which carries no marker, for the
    corpus's newest write: it rewrote every file, and the next refresh compared the whole corpus."""
    assert write_sample_corpus(str(tmp_path), 60, 7)
    root = str(tmp_path / "corpus")
    assert upkeep.set_upkeep_properties(root, False, {"job": "maintain", "run_id": "maintain-1"})
    assert DeltaTable(root).history(1)[0]["operation"] == "SET TBLPROPERTIES"
    version = DeltaTable(root).version()
    assert not write_sample_corpus(str(tmp_path), 60, 7)
    assert DeltaTable(root).version() == version


@pytest.mark.subprocess
@pytest.mark.parametrize("table", [TRUTH_TABLE, "corpus"])
def test_a_make_corpus_killed_between_its_tables_commits_is_written_whole_by_the_next(tmp_path, table) -> None:
    """Found in review: the corpus was committed before its truth, and its commit's marker made the next
    make-corpus say "already there", so a run killed between the two left the truth of the corpus
    before (or none) beside the new corpus, for every evaluation to score against."""
    assert write_sample_corpus(str(tmp_path), 30, 7)
    run_killed("deltalake:write_deltalake", f"a[0].endswith('/{table}')",
               "from sample_corpus.generate import write_sample_corpus; write_sample_corpus(argv[0], 40, 8)", str(tmp_path))
    assert write_sample_corpus(str(tmp_path), 40, 8)  # the retry
    corpus, truth = generate_corpus(n_items=40, seed=8)
    assert DeltaTable(str(tmp_path / "corpus")).to_pyarrow_table().sort_by("content_id").equals(corpus.sort_by("content_id"))
    assert DeltaTable(str(tmp_path / TRUTH_TABLE)).to_pyarrow_table().sort_by("content_id").equals(truth.sort_by("content_id"))
    assert not write_sample_corpus(str(tmp_path), 40, 8)


def test_a_scenario_day_is_appended_after_the_last_day(tmp_path) -> None:
    write_sample_corpus(str(tmp_path), 60, 7)
    day = append_scenario_day(str(tmp_path), "truncated", 10, 1)
    corpus = DeltaTable(str(tmp_path / "corpus")).to_pyarrow_table()
    assert day == "2026-11-21" and corpus.num_rows == 70
    assert sorted(set(corpus["ds"].to_pylist()))[-1] == day
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario_day("eclipse", day, 1, 1)
