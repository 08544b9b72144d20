"""The real photos the sample corpus is cut from (shipped inside installed wheels: scikit-image's
``skimage.data`` and scikit-learn's sample images; and, when asked, the photos of a folder), the
subjects its texts talk about and their captions; cached, because every original of a photo starts
from it.

A photo of a folder is named by its path (its ``base_id``): a corpus larger than its photos' windows
can keep apart needs more photos than the wheels hold (docs/design.md, The sample corpus's photos)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
from PIL import Image

# (base_id, subject the description templates talk about).  Only real photographs whose
# loaders work offline.  Left out on purpose: clock (already motion blurred, which would
# contradict is_blurred=False on its originals), page/text (contain printed text, which
# would blur the has_text_overlay signal), synthetic images (horse, logo, colorwheel,
# checkerboard, ...), tiny ones (lfw_subset, microaneurysms) and pooch-only downloads.
SKIMAGE_PHOTOS: tuple[tuple[str, str], ...] = (
    ("astronaut", "an astronaut in a flight suit"),
    ("chelsea", "a tabby cat"),
    ("coffee", "a cup of coffee"),
    ("rocket", "a rocket launch"),
    ("camera", "a photographer with a camera"),
    ("coins", "ancient Greek coins"),
    ("moon", "the surface of the moon"),
    ("hubble_deep_field", "distant galaxies"),
    ("retina", "a human retina"),
    ("immunohistochemistry", "stained tissue under a microscope"),
    ("cell", "a single cell under a microscope"),
    ("brick", "an old brick wall"),
    ("grass", "a patch of grass"),
    ("gravel", "a gravel path"),
)
SKLEARN_PHOTOS: tuple[tuple[str, str], ...] = (
    ("china", "a temple in China"),
    ("flower", "a flower in bloom"),
)
SUBJECTS: dict[str, str] = dict(SKIMAGE_PHOTOS + SKLEARN_PHOTOS)
BASE_IDS: tuple[str, ...] = tuple(SUBJECTS)

# A folder's pictures: only these formats are opened, only pictures an original can be cut from
# without upscaling past originals.MAX_UPSCALE (200 px: MIN_SIDE / MAX_UPSCALE), and only those
# with at least this many distinct colours in a 64 x 64 thumbnail: colour photos have thousands,
# detailed drawings about a thousand, letters, symbols and flat pictures a few hundred (their
# originals would read as text, or be near copies of each other).
FOLDER_FORMATS = ("JPEG", "PNG", "WEBP")
FOLDER_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
FOLDER_MIN_SIDE = 200
PHOTO_MIN_COLOURS = 1000


def _opened(path: str) -> Image.Image:
    """A folder's picture decoded as RGB, a transparent one over white (cut-out photos are)."""
    with Image.open(path, formats=FOLDER_FORMATS) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            over = Image.new("RGBA", image.size, "white")
            over.alpha_composite(image.convert("RGBA"))
            return over.convert("RGB")
        return image.convert("RGB")


def _is_photo(path: Path) -> bool:
    """Whether a folder's file is a photo the corpus can use (FOLDER_FORMATS, FOLDER_MIN_SIDE, PHOTO_MIN_COLOURS)."""
    try:
        picture = _opened(str(path))
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    if max(picture.size) < FOLDER_MIN_SIDE:
        return False
    colours = picture.resize((64, 64), Image.Resampling.BOX).getcolors(64 * 64)
    return colours is not None and len(colours) >= PHOTO_MIN_COLOURS


@functools.cache
def folder_photos(folder: str) -> tuple[str, ...]:
    """The photos under `folder` (every depth, in path order) as base ids, or a ValueError saying
    that it holds none."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"no folder of photos at {folder}")
    found = tuple(str(p) for p in sorted(root.rglob("*")) if p.suffix.lower() in FOLDER_SUFFIXES and p.is_file() and _is_photo(p))
    if not found:
        raise ValueError(f"{folder} holds no photo: {', '.join(FOLDER_FORMATS)} files of at least {FOLDER_MIN_SIDE} px "
                         f"and {PHOTO_MIN_COLOURS} colours at 64 x 64 px")
    return found


def photo_pool(folder: str | None) -> tuple[str, ...]:
    """The base ids originals cycle through: the wheels' photos, then `folder`'s, if any."""
    return BASE_IDS + (folder_photos(folder) if folder else ())


def subject(base_id: str) -> str:
    """What the texts about a picture of this photo talk about."""
    if base_id in SUBJECTS:
        return SUBJECTS[base_id]
    caption = base_caption(base_id)
    return caption[:1].lower() + caption[1:]


@functools.cache
def base_photo(base_id: str) -> Image.Image:
    """Decoded RGB photo at full resolution; cached because every original of it crops it.

    Callers must not draw on the returned image in place (it is shared).
    """
    if base_id not in SUBJECTS:
        return _opened(base_id)
    if base_id in dict(SKLEARN_PHOTOS):
        from sklearn.datasets import load_sample_image  # heavy import, only when needed

        pixels = load_sample_image(f"{base_id}.jpg")
    else:
        import skimage.data  # heavy import, only when needed

        pixels = getattr(skimage.data, base_id)()
    return Image.fromarray(np.asarray(pixels)).convert("RGB")


def _clean_caption(line: str) -> str:
    """Turn a loader docstring's first line into a pin-like caption."""
    text = line.strip().rstrip(".").replace('"', "")
    text = re.sub(r"^(Color image of the|Gray-level)\s+", "", text)
    text = re.sub(r"\s+image$", "", text)
    return text[:1].upper() + text[1:]


@functools.cache
def base_caption(base_id: str) -> str:
    """Title of a base photo, taken from what its package says about it.

    scikit-learn has one loader for both images, so its DESCR is used instead of a
    docstring: file stem plus the Flickr user from the image's source URL (the
    "Attribution" line of flower.jpg repeats china.jpg's author, the URL does not).
    A folder's photo: the first line of a text file of the same name beside it (Tux Paint's
    stamps describe themselves so), else its file name in words.
    """
    if base_id not in SUBJECTS:
        path = Path(base_id)
        beside = path.with_suffix(".txt")
        line = beside.read_text(encoding="utf-8", errors="replace").strip().splitlines()[:1] if beside.is_file() else []
        words = line[0] if line else re.sub(r"[_\-\s]+", " ", path.stem).strip()
        return _clean_caption(words or path.name)
    if base_id in dict(SKLEARN_PHOTOS):
        from sklearn.datasets import load_sample_images

        block = load_sample_images().DESCR.split(f"Image: {base_id}.jpg", 1)[1]
        user = re.search(r"flickr\.com/photos/([^/\s]+)", block)
        credit = f", photographed by {user.group(1)} on Flickr" if user else ""
        return f"{base_id.capitalize()}{credit}"
    import skimage.data

    doc = getattr(skimage.data, base_id).__doc__ or base_id
    return _clean_caption(doc.strip().splitlines()[0])
