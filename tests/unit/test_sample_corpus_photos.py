"""Tests for the sample corpus's photos from a folder (sample_corpus.photos): only photos of the
allowed formats are taken, their captions come from beside them, and the corpus cuts its originals
from them as from the wheels' photos, nothing else changing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sample_corpus.generate import generate_corpus, write_sample_corpus
from sample_corpus.photos import BASE_IDS, base_caption, base_photo, folder_photos, photo_pool, subject


def _photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A picture with a photo's many colours: smooth random light in each channel, upsampled."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    smooth = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    grain = rng.integers(-12, 13, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(smooth, dtype=np.int64) + grain, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Photos of each allowed format (one a cut-out over transparency, with a caption beside it, one
    in a subfolder), and what must be left out: too small, too few colours, a format outside the
    allowlist, a text file named like a picture."""
    root = tmp_path_factory.mktemp("photos")
    (root / "animals").mkdir()
    _photo(1).save(root / "b_field.jpg", "JPEG", quality=90)
    cut_out = _photo(2).convert("RGBA")
    alpha = np.zeros((240, 320), dtype=np.uint8)
    alpha[30:210, 40:280] = 255
    cut_out.putalpha(Image.fromarray(alpha))
    cut_out.save(root / "animals" / "owl.png")
    (root / "animals" / "owl.txt").write_text("A snowy owl.\nde.utf8=Eine Schneeeule.\n", encoding="utf-8")
    _photo(3).save(root / "c-sea_shore.webp", "WEBP", quality=90)
    _photo(4, (150, 120)).save(root / "a_small.png")  # an original would be upscaled past MAX_UPSCALE
    Image.new("RGB", (320, 240), (200, 30, 30)).save(root / "a_flat.png")  # a drawing's few colours
    _photo(5).save(root / "d_animated.gif", "GIF")  # not an allowed format
    (root / "e_notes.png").write_text("not a picture")
    return root


def test_a_folder_gives_its_photos_of_allowed_formats_only(folder: Path) -> None:
    assert folder_photos(str(folder)) == (str(folder / "animals" / "owl.png"), str(folder / "b_field.jpg"),
                                          str(folder / "c-sea_shore.webp"))
    assert photo_pool(str(folder)) == BASE_IDS + folder_photos(str(folder))
    assert photo_pool(None) == BASE_IDS


def test_a_folder_without_photos_is_refused(tmp_path: Path) -> None:
    Image.new("RGB", (320, 240), "white").save(tmp_path / "blank.png")
    with pytest.raises(ValueError, match="holds no photo"):
        folder_photos(str(tmp_path))
    with pytest.raises(ValueError, match="no folder of photos"):
        folder_photos(str(tmp_path / "missing"))


def test_captions_come_from_beside_the_photo_or_its_name(folder: Path) -> None:
    owl, field, shore = folder_photos(str(folder))
    assert base_caption(owl) == "A snowy owl"
    assert subject(owl) == "a snowy owl"
    assert base_caption(shore) == "C sea shore"
    assert subject("chelsea") == "a tabby cat"


def test_a_cut_out_photo_stands_on_white(folder: Path) -> None:
    owl = np.asarray(base_photo(str(folder / "animals" / "owl.png")))
    assert owl.shape == (240, 320, 3)
    assert (owl[:30] == 255).all() and (owl[210:] == 255).all()  # transparent: white
    inside = np.asarray(_photo(2))[30:210, 40:280]
    assert np.array_equal(owl[30:210, 40:280], inside)


def test_originals_are_cut_from_the_folder_photos_after_the_wheels(folder: Path) -> None:
    corpus, truth = generate_corpus(n_items=160, seed=3, photos=str(folder))
    plain_corpus, plain_truth = generate_corpus(n_items=160, seed=3)
    rows = truth.to_pylist()
    originals = [row["base_id"] for row in rows if row["variant"] == "original"]
    assert len(originals) > len(BASE_IDS) + 3
    assert originals[:len(BASE_IDS) + 3] == [*BASE_IDS, *folder_photos(str(folder))]  # the pool, in its order
    owl = str(folder / "animals" / "owl.png")
    titles = [item["title"] for item, row in zip(corpus.to_pylist(), rows)
              if row["base_id"] == owl and row["text_kind"] == "normal" and not row["is_spam_text"]]
    assert titles and all(title == "A snowy owl" for title in titles)
    # the same plan: only the pictures cut from other photos (and the texts about them) differ
    assert truth["variant"].to_pylist() == plain_truth["variant"].to_pylist()
    assert corpus["content_id"].to_pylist() == plain_corpus["content_id"].to_pylist()


def test_a_corpus_of_other_photos_is_written_again(folder: Path, tmp_path: Path) -> None:
    assert write_sample_corpus(str(tmp_path), 60, 7)
    assert not write_sample_corpus(str(tmp_path), 60, 7)
    assert write_sample_corpus(str(tmp_path), 60, 7, photos=str(folder))
    assert not write_sample_corpus(str(tmp_path), 60, 7, photos=str(folder))
