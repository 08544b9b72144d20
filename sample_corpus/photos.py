"""The real photos the sample corpus is cut from (shipped inside installed wheels: scikit-image's
``skimage.data`` and scikit-learn's sample images), the subjects its texts talk about and their
captions; cached, because every original of a photo starts from it."""

from __future__ import annotations

import functools
import re

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


@functools.cache
def base_photo(base_id: str) -> Image.Image:
    """Decoded RGB photo at full resolution; cached because every original of it crops it.

    Callers must not draw on the returned image in place (it is shared).
    """
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
    """
    if base_id in dict(SKLEARN_PHOTOS):
        from sklearn.datasets import load_sample_images

        block = load_sample_images().DESCR.split(f"Image: {base_id}.jpg", 1)[1]
        user = re.search(r"flickr\.com/photos/([^/\s]+)", block)
        credit = f", photographed by {user.group(1)} on Flickr" if user else ""
        return f"{base_id.capitalize()}{credit}"
    import skimage.data

    doc = getattr(skimage.data, base_id).__doc__ or base_id
    return _clean_caption(doc.strip().splitlines()[0])
