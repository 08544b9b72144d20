"""Image quality from measurements of the decoded image, and text regions found by OCR.

ImageQualityLabeler measures (in `prepare`, on the CPU, so the runner overlaps it with other
batches) and turns measurements into scores with fixed, documented transforms. Nothing here was
fitted to the generated corpus; the constants come from what a pin is shown at and from the
published definition of each measure.

Working copy: luminance (ITU-R 601, PIL's "L"), float in [0, 1], area-downscaled so its long side
is at most WORKING_SIDE (512 px, about a pin's size in a close-up). Larger photos are all
measured at the same size, so the measures do not depend on the upload resolution. Smaller
images are measured as they are: upscaling would measure the interpolation filter, and small
size is what low_resolution reports.

- blurry: the blur metric of Crete et al. (2007, "The blur effect: perception and estimation
  with a new no-reference perceptual blur metric"), which skimage.measure.blur_effect also
  implements. It re-blurs the image with an 11-px box filter along each axis and measures how
  much of the neighbouring-pixel variation the re-blur removes: a sharp image loses most of it
  (metric near 0), an already blurred one loses little (near 1). It is a ratio, so it does not
  depend on contrast or brightness. Before measuring, a Gaussian of sigma 0.8 px removes
  pixel-level noise (sensor noise, JPEG mosquito noise), which the metric would otherwise read
  as sharpness (a motion-blurred photo of a clock on a noisy wall reads as sharp without it).
  On 13 real images (5 never used by the sample corpus: grace_hopper, the motorcycle stereo
  pair, two scanned pages) it reads 0.23-0.46 when sharp (median 0.39), 0.31-0.55 (0.50) after
  a Gaussian blur of sigma 1 px at working size, 0.40-0.63 (0.585) after sigma 1.5 and
  0.49-0.71 (0.66) after sigma 2. Score: logistic around
  BLUR_MIDPOINT = 0.57, the median reading at sigma ~1.4 px, where softness starts to show at
  pin size, with scale 0.04 (median sharp photo 0.01, sigma 1: 0.15, sigma 2: 0.9). Smooth
  scenes with few edges (a starfield, a page of text) read lower at the same blur, and soft
  subjects (microscopy) higher: the metric measures the image, not the camera.
- low_resolution: from the short side s in pixels, 1 / (1 + (s / 180)^6): 0.5 at 180 px (below
  a grid column of ~236 px even before retina displays double it), 0.88 at 128, 0.11 at 256,
  under 0.01 from 420 up.
- bad_exposure: max(under, over). under = the share of clipped-black pixels (<= 0.02) through a
  logistic around 0.3 (scale 0.06), times the mean luminance through a logistic falling around
  0.35 (scale 0.06): a dark image that lost its shadows over a third of its area. over is the
  mirror image: clipped-white pixels (>= 0.98) around 0.3, mean rising around 0.55 (the two
  mean gates sit about 0.1 either side of mid-grey, sRGB 18% grey being ~0.46). Clipping alone is not enough (a bright photo
  with a black frame is fine) and neither is the mean (a dark subject is fine). Limitation: a
  product shot on a pure white or black backdrop over a third of the image scores as over- or
  under-exposed, since a clipped backdrop and a clipped sky look the same in a histogram.
- low_quality: noisy-OR of blurry, low_resolution, bad_exposure and extreme_aspect
  (1 - prod(1 - s)): any one defect makes an image low quality, and mild ones add up.
  extreme_aspect = logistic of ln(long / short) around ln 3 (scale 0.15): taller than 1:3
  is cut in the grid.

OcrTextLabeler runs RapidOCR (PP-OCRv4 detection + recognition, ONNX weights in the wheel) and
reports where the text is. Regions read as fewer than MIN_TEXT_CHARS letters or digits are
dropped: on photos the detector's false positives are single round shapes read as one glyph
(a cat's eye or a flower as "O", a spot as "®"), and one glyph is not text.
text_heavy = 1 - exp(-coverage / 0.1), where coverage is the share of the image inside the
union of the text boxes: 0.5 at ~7% of the area, 0.86 at 20% (a name tag or watermark covers
under 1-3%, one line of big overlay text 7-15%, the sample corpus's promo overlays 8-50%). The
boxes (corners as fractions of width and height), their text and recognition confidence go into
`detail`: this is the signal that says where text sits on the image.
"""
from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from PIL import Image
from scipy.ndimage import uniform_filter1d

from signals.inputs import ImageInput
from signals.labels.base import Labeler, LabelScores

WORKING_SIDE = 512
DENOISE_SIGMA = 0.8
CRETE_FILTER = 11
BLUR_MIDPOINT, BLUR_SCALE = 0.57, 0.04
LOW_RES_SIDE, LOW_RES_POWER = 180.0, 6.0
DARK, BRIGHT = 0.02, 0.98
CLIPPED_SHARE, EXPOSURE_SCALE = 0.3, 0.06
UNDER_MEAN, OVER_MEAN = 0.35, 0.55
ASPECT_MIDPOINT, ASPECT_SCALE = math.log(3.0), 0.15
TEXT_COVERAGE_SCALE = 0.1
MIN_TEXT_CHARS = 2
COVERAGE_GRID = 256

BLURRY, LOW_RESOLUTION, BAD_EXPOSURE, LOW_QUALITY = "blurry", "low_resolution", "bad_exposure", "low_quality"
TEXT_HEAVY = "text_heavy"


def _logistic(x: float, midpoint: float, scale: float) -> float:
    return 1.0 / (1.0 + math.exp(-(x - midpoint) / scale))


def working_luminance(image: Image.Image, side: int = WORKING_SIDE) -> np.ndarray:
    """Luminance in [0, 1], area-downscaled to a long side of at most `side` pixels."""
    luminance = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    scale = side / max(luminance.shape)
    if scale < 1.0:
        size = (max(1, round(luminance.shape[1] * scale)), max(1, round(luminance.shape[0] * scale)))
        luminance = cv2.resize(luminance, size, interpolation=cv2.INTER_AREA)
    return luminance


def blur_effect(luminance: np.ndarray, filter_size: int = CRETE_FILTER) -> float:
    """Crete et al.'s blur metric in [0, 1] (0 sharp, 1 blurred): the worse of the two axes
    measured. An axis with no variation (one colour) shows no edge and reads 1, and so does an
    image with no neighbouring pixels along either axis (1x1)."""
    readings = []
    for axis in (0, 1):
        if luminance.shape[axis] < 2:
            continue
        reblurred = uniform_filter1d(luminance, filter_size, axis=axis)
        variation = np.abs(np.diff(luminance, axis=axis))
        remaining = np.abs(np.diff(reblurred, axis=axis))
        total = float(variation.sum())
        removed = float(np.maximum(0.0, variation - remaining).sum())
        readings.append((total - removed) / total if total > 0 else 1.0)
    return max(readings, default=1.0)


@dataclass(frozen=True)
class QualityMeasures:
    """What was measured on one image (stored in `detail`)."""

    width: int
    height: int
    short_side: int
    long_side: int
    aspect_ratio: float
    blur_effect: float
    mean_luminance: float
    dark_fraction: float
    bright_fraction: float


def measure(image: Image.Image) -> QualityMeasures:
    """Resolution, aspect ratio, blur and exposure measures of an RGB image."""
    width, height = image.size
    luminance = working_luminance(image)
    denoised = cv2.GaussianBlur(luminance, (0, 0), DENOISE_SIGMA)
    return QualityMeasures(
        width=width,
        height=height,
        short_side=min(width, height),
        long_side=max(width, height),
        aspect_ratio=round(max(width, height) / min(width, height), 4),
        blur_effect=round(blur_effect(denoised), 4),
        mean_luminance=round(float(luminance.mean()), 4),
        dark_fraction=round(float((luminance <= DARK).mean()), 4),
        bright_fraction=round(float((luminance >= BRIGHT).mean()), 4),
    )


def quality_scores(m: QualityMeasures) -> dict[str, float]:
    """The four label scores of a measured image (transforms in the module docstring)."""
    blurry = _logistic(m.blur_effect, BLUR_MIDPOINT, BLUR_SCALE)
    low_res = 1.0 / (1.0 + (m.short_side / LOW_RES_SIDE) ** LOW_RES_POWER)
    under = _logistic(m.dark_fraction, CLIPPED_SHARE, EXPOSURE_SCALE) * _logistic(-m.mean_luminance, -UNDER_MEAN, EXPOSURE_SCALE)
    over = _logistic(m.bright_fraction, CLIPPED_SHARE, EXPOSURE_SCALE) * _logistic(m.mean_luminance, OVER_MEAN, EXPOSURE_SCALE)
    exposure = max(under, over)
    aspect = _logistic(math.log(m.aspect_ratio), ASPECT_MIDPOINT, ASPECT_SCALE)
    low_quality = 1.0 - (1.0 - blurry) * (1.0 - low_res) * (1.0 - exposure) * (1.0 - aspect)
    return {BLURRY: blurry, LOW_RESOLUTION: low_res, BAD_EXPOSURE: exposure, LOW_QUALITY: low_quality}


class ImageQualityLabeler(ImageInput, Labeler):
    """blurry, low_resolution, bad_exposure and their combination low_quality; no model."""

    default_thresholds: ClassVar[Mapping[str, float]] = {BLURRY: 0.5, LOW_RESOLUTION: 0.5, BAD_EXPOSURE: 0.5, LOW_QUALITY: 0.5}

    @property
    def labels(self) -> tuple[str, ...]:
        return (BLURRY, LOW_RESOLUTION, BAD_EXPOSURE, LOW_QUALITY)

    def resource_key(self) -> Hashable:
        return ("image-quality",)

    def load_resources(self, device: torch.device) -> None:
        """Nothing to load: the measures are computed directly."""

    def prepare(self, row: Mapping[str, Any]) -> QualityMeasures:
        return measure(self.decode(row))

    def score(self, prepared: list[QualityMeasures]) -> list[LabelScores]:
        return [LabelScores(quality_scores(m), json.dumps(asdict(m))) for m in prepared]


def text_coverage(boxes: list[np.ndarray]) -> float:
    """Share of the image inside the union of boxes given in normalised coordinates (overlaps
    counted once), rasterised on a COVERAGE_GRID x COVERAGE_GRID grid."""
    mask = np.zeros((COVERAGE_GRID, COVERAGE_GRID), dtype=np.uint8)
    for box in boxes:
        cv2.fillPoly(mask, [np.round(box * COVERAGE_GRID).astype(np.int32)], 1)
    return float(mask.mean())


@dataclass(frozen=True)
class _OcrInput:
    bgr: np.ndarray  # RapidOCR reads arrays as OpenCV's BGR
    width: int
    height: int


class OcrTextLabeler(ImageInput, Labeler):
    """text_heavy from the area of RapidOCR's text boxes; boxes and text in `detail`."""

    default_thresholds: ClassVar[Mapping[str, float]] = {TEXT_HEAVY: 0.5}

    @property
    def labels(self) -> tuple[str, ...]:
        return (TEXT_HEAVY,)

    def resource_key(self) -> Hashable:
        return ("rapidocr", self.config.model.version)

    def load_resources(self, device: torch.device) -> Any:
        from rapidocr_onnxruntime import RapidOCR

        return RapidOCR()

    def prepare(self, row: Mapping[str, Any]) -> _OcrInput:
        image = self.decode(row)
        return _OcrInput(np.ascontiguousarray(np.asarray(image)[:, :, ::-1]), image.width, image.height)

    def score(self, prepared: list[_OcrInput]) -> list[LabelScores]:
        return [self._read(item) for item in prepared]

    def _read(self, item: _OcrInput) -> LabelScores:
        found, _ = self.resources(item.bgr)
        scale = np.array([item.width, item.height], dtype=np.float64)
        regions = [
            (np.asarray(box, dtype=np.float64) / scale, text, float(conf))
            for box, text, conf in found or []
            if sum(ch.isalnum() for ch in text) >= MIN_TEXT_CHARS
        ]
        coverage = text_coverage([box for box, _, _ in regions])
        detail = {
            "coverage": round(coverage, 4),
            "boxes": [{"text": t, "confidence": round(c, 4), "box": np.round(b, 4).tolist()} for b, t, c in regions],
        }
        return LabelScores({TEXT_HEAVY: 1.0 - math.exp(-coverage / TEXT_COVERAGE_SCALE)}, json.dumps(detail, ensure_ascii=False))
