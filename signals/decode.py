"""Image decoding with safe limits.

Corpus bytes come from users: corrupt, truncated, empty, not images at all, or headers that
claim billions of pixels. Decoding must turn each of these into an `InputError` with a reason
(which becomes an error row) and never hang, exhaust memory or kill the worker.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a half-grey image


class InputError(ValueError):
    """A row's input cannot be used; the message is the reason recorded on its error row."""


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds checked before any pixel is decoded."""

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 64 * 1024 * 1024
    min_side: int = 1


def decode_image(data: bytes | None, limits: DecodeLimits = DecodeLimits()) -> Image.Image:
    """Decode bytes into an RGB PIL image, or raise InputError saying why not."""
    if data is None:
        raise InputError("image is null")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"image is {type(data).__name__}, not bytes")
    if len(data) == 0:
        raise InputError("image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise InputError(f"image is {len(data)} bytes, over the {limits.max_bytes} byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(bytes(data)))
            width, height = image.size
            if width * height > limits.max_pixels:
                raise InputError(f"image claims {width}x{height} pixels, over the {limits.max_pixels} pixel limit")
            if min(width, height) < limits.min_side:
                raise InputError(f"image is {width}x{height}, under the minimum side {limits.min_side}")
            image.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"image too large: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise InputError("not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"image is corrupt or truncated: {exc}") from exc
    return to_rgb(ImageOps.exif_transpose(image))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha over white, 16-bit scaled (not clipped) to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257.0  # 16-bit range onto 8 bits
        return Image.fromarray(np.rint(array).astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "F":
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
