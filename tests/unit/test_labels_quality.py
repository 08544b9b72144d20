"""Tests for signals.labels.quality: blur, resolution and exposure scores on real photos and
on the generated corpus against its ground truth, error rows for bad images, and OCR text
regions where text was drawn."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import skimage.data
from labels_helpers import config, png, run, scores_of
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from reference import real_photos
from sklearn.metrics import roc_auc_score

from sample_corpus.generate import generate_corpus
from signals.contracts import STATUS_ERROR, STATUS_OK
from signals.labels.quality import ImageQualityLabeler, OcrTextLabeler, measure, quality_scores

PHOTOS = real_photos("astronaut", "chelsea", "coffee", "motorcycle", "china", "flower", "grace_hopper")


def _scores(image: Image.Image) -> dict[str, float]:
    return quality_scores(measure(image))


def _blurred(image: Image.Image, sigma_at_512: float) -> Image.Image:
    """A Gaussian blur of `sigma_at_512` px as seen at the 512 px working size."""
    scale = max(image.size) / 512 if max(image.size) > 512 else 1.0
    return image.filter(ImageFilter.GaussianBlur(sigma_at_512 * scale))


def _score_table(results: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([scores_of(row) for row in results["scores"]], index=results.index)


@pytest.fixture(scope="module")
def corpus_scores() -> tuple[pd.DataFrame, pd.DataFrame]:
    corpus, truth = generate_corpus(n_items=120, seed=3)
    results = run(ImageQualityLabeler(config("image_quality", batch_size=8)), corpus.to_pandas()[["image"]])
    return results, truth.to_pandas()


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_blurred_copy_of_a_real_photo_is_blurrier(name: str) -> None:
    image = PHOTOS[name]
    sharp, soft, blurred = (_scores(_blurred(image, s))["blurry"] for s in (0.0, 1.5, 3.0))
    assert sharp < soft < blurred
    assert sharp < 0.2 and blurred > 0.8


@pytest.mark.parametrize("name", ["motorcycle", "grace_hopper"])
def test_blur_measure_does_not_depend_on_upload_resolution(name: str) -> None:
    """The same photo uploaded at 2x and 3x is measured at the same working size."""
    image = PHOTOS[name]
    readings = [measure(image.resize((image.width * k, image.height * k), Image.Resampling.LANCZOS)).blur_effect for k in (1, 2, 3)]
    assert max(readings) - min(readings) < 0.03, readings


def test_motion_blurred_real_photo_is_blurry() -> None:
    """A clock photographed while moving the camera, sensor noise on a flat wall around it:
    the noise must not read as sharpness."""
    assert _scores(Image.fromarray(skimage.data.clock()).convert("RGB"))["blurry"] > 0.5


def test_an_image_with_nothing_to_compare_reads_as_blurred_as_a_flat_one() -> None:
    """A 1x1 pixel (a tracking pixel) has no neighbouring pixels, a flat image no variation
    between them: neither shows an edge. The 1x1 read 0, perfectly sharp."""
    flat = measure(Image.new("RGB", (8, 8), (120, 30, 200)))
    pixel = measure(Image.new("RGB", (1, 1), (120, 30, 200)))
    assert pixel.blur_effect == flat.blur_effect == 1.0 and quality_scores(pixel)["blurry"] > 0.99
    strip = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 1, 3), dtype=np.uint8))
    assert measure(strip).blur_effect < 0.5  # one axis measured: its noise reads sharp


def test_low_resolution_follows_the_short_side() -> None:
    image = PHOTOS["coffee"]
    scores = [_scores(image.resize((round(s * 1.5), s)))["low_resolution"] for s in (48, 128, 180, 256, 400)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.99 and abs(scores[2] - 0.5) < 1e-6 and scores[-1] < 0.02


def test_bad_exposure() -> None:
    image = PHOTOS["grace_hopper"]
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    crushed = Image.fromarray((np.clip((pixels - 0.35) * 0.6, 0, 1) * 255).astype(np.uint8))
    blown = Image.fromarray((np.clip(pixels * 4.0, 0, 1) * 255).astype(np.uint8))
    darker = Image.fromarray((pixels * 0.6 * 255).astype(np.uint8))  # dim, but nothing lost
    assert _scores(image)["bad_exposure"] < 0.05
    assert _scores(darker)["bad_exposure"] < 0.2
    assert _scores(crushed)["bad_exposure"] > 0.5
    assert _scores(blown)["bad_exposure"] > 0.5


def test_low_quality_combines_the_defects() -> None:
    image = PHOTOS["china"]
    clean = _scores(image)
    small_and_blurred = _scores(_blurred(image, 3.0).resize((96, 64)))
    assert clean["low_quality"] < 0.2
    assert small_and_blurred["low_quality"] >= max(small_and_blurred[k] for k in ("blurry", "low_resolution", "bad_exposure"))
    tall = _scores(image.resize((200, 1000)))
    assert tall["low_quality"] > 0.9  # 1:5 is cut in the grid


def test_corpus_roc_auc(corpus_scores) -> None:
    results, truth = corpus_scores
    ok = results["status"] == STATUS_OK
    scores, truth = _score_table(results[ok]), truth[ok.to_numpy()]
    assert roc_auc_score(truth["is_blurred"], scores["blurry"]) >= 0.9
    assert roc_auc_score(truth["is_low_res"], scores["low_resolution"]) >= 0.9
    assert roc_auc_score(truth["is_blurred"] | truth["is_low_res"], scores["low_quality"]) >= 0.9


def test_corpus_bad_images_are_error_rows_and_detail_holds_measurements(corpus_scores) -> None:
    results, truth = corpus_scores
    assert (results["status"] == STATUS_ERROR).tolist() == truth["is_bad_image"].tolist()
    assert results.loc[results["status"] == STATUS_ERROR, "error"].str.len().gt(0).all()
    for (_, row), (_, t) in zip(results[results["status"] == STATUS_OK].iterrows(), truth[~truth["is_bad_image"]].iterrows()):
        detail = json.loads(row["detail"])
        assert {"width", "height", "short_side", "aspect_ratio", "blur_effect", "mean_luminance", "dark_fraction"} <= set(detail)
        if t["variant"] == "low_res":
            assert detail["long_side"] <= 64


def test_corrupt_image_is_an_error_row_between_good_rows() -> None:
    good = png(PHOTOS["chelsea"])
    frame = pd.DataFrame({"image": [good, b"\xff\xd8\xff\xe0 not really a jpeg", None, good]})
    results = run(ImageQualityLabeler(config("image_quality", batch_size=3)), frame)
    assert results["status"].tolist() == [STATUS_OK, STATUS_ERROR, STATUS_ERROR, STATUS_OK]
    assert results["scores"][1] is None and "image" in results["error"][1]
    assert results["scores"][0] == results["scores"][3]


# --------------------------------------------------------------------------------------
# OCR
# --------------------------------------------------------------------------------------


def _with_text(image: Image.Image, text: str) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The image with one line of big outlined text across its middle, and the text's box (normalised)."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=out.height // 6)
    while draw.textlength(text, font=font) > 0.8 * out.width:
        font = ImageFont.load_default(size=int(font.size * 0.9))
    xy = (out.width / 2, out.height / 2)
    draw.text(xy, text, font=font, fill=(255, 255, 255), anchor="mm", stroke_width=3, stroke_fill=(0, 0, 0))
    left, top, right, bottom = draw.textbbox(xy, text, font=font, anchor="mm", stroke_width=3)
    return out, (left / out.width, top / out.height, right / out.width, bottom / out.height)


@pytest.fixture(scope="module")
def ocr() -> OcrTextLabeler:
    return OcrTextLabeler(config("ocr_text", batch_size=8)).load()


def test_ocr_finds_text_where_it_was_drawn(ocr: OcrTextLabeler) -> None:
    photo = PHOTOS["grace_hopper"]
    overlaid, (left, top, right, bottom) = _with_text(photo, "SUMMER SALE")
    plain, with_text = ocr.score([ocr.prepare({"image": png(photo)}), ocr.prepare({"image": png(overlaid)})])
    assert plain.scores["text_heavy"] < 0.1  # only her small name tag
    detail = json.loads(with_text.detail)
    assert "SUMMERSALE" in "".join(b["text"] for b in detail["boxes"]).replace(" ", "").upper()
    assert with_text.scores["text_heavy"] == pytest.approx(1 - np.exp(-detail["coverage"] / 0.1), abs=1e-3)
    assert with_text.scores["text_heavy"] > plain.scores["text_heavy"] + 0.3
    corners = np.array([corner for b in detail["boxes"] for corner in b["box"]])
    assert corners.min() >= 0.0 and corners.max() <= 1.0
    (sale,) = [np.array(b["box"]) for b in detail["boxes"] if "SALE" in b["text"].upper()]
    centre = sale.mean(axis=0)
    assert left < centre[0] < right and top < centre[1] < bottom
    assert 0.5 * (right - left) * (bottom - top) < detail["coverage"] < 2.0 * (right - left) * (bottom - top)


def test_ocr_reads_a_scanned_page(ocr: OcrTextLabeler) -> None:
    page = Image.fromarray(skimage.data.page()).convert("RGB")
    (result,) = ocr.score([ocr.prepare({"image": png(page)})])
    assert result.scores["text_heavy"] > 0.9
    assert len(json.loads(result.detail)["boxes"]) >= 3


def test_ocr_bad_image_is_an_error_row(ocr: OcrTextLabeler) -> None:
    results = run(ocr, pd.DataFrame({"image": [b"", png(PHOTOS["coffee"].resize((64, 40)))]}))
    assert results["status"].tolist() == [STATUS_ERROR, STATUS_OK]
    assert "empty" in results["error"][0]
