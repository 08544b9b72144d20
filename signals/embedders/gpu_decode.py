"""JPEG decoding and preprocessing on the model's device (`params.gpu_decode`).

On a GPU the CPU is what limits image throughput: decoding and resizing a 512 px JPEG costs a
CPU core several milliseconds, the model a few microseconds. With `gpu_decode`, `prepare` only
reads the header (tens of microseconds) and keeps the bytes; the batch is decoded with
`torchvision.io.decode_jpeg(device=...)` (nvJPEG on CUDA) and resized, cropped and normalised
there, reproducing the model's own torchvision preprocessing (`DevicePreprocess`).

Safety is unchanged: only a plain JPEG (baseline or progressive, RGB or grayscale, no EXIF
rotation, ending in an EOI marker, within `signals.decode.DecodeLimits` and the device pixel
budget) is kept for the device. Anything else - PNG, CMYK, rotated, truncated, oversized,
corrupt, null - is decoded on the CPU (`signals.decode.decode_image`), which applies the limits
and gives the same error reasons as without `gpu_decode`; its pixels are then resized and
normalised on the device with the JPEGs (`DecodedImage`), the expensive part of the CPU path.
A JPEG the device decoder refuses is decoded and transformed on the CPU instead; if that fails
too the row is an error row, never the batch.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from signals.decode import DecodeLimits

JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
DEFAULT_DEVICE_MAX_PIXELS = 16 * 1024 * 1024  # bigger images are decoded on the CPU, one at a time
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class EncodedJpeg:
    """A row's JPEG bytes, header checked, waiting to be decoded on the device."""

    data: torch.Tensor  # uint8, 1-D, CPU
    width: int
    height: int


def jpeg_for_device(data: Any, limits: DecodeLimits, device_max_pixels: int = DEFAULT_DEVICE_MAX_PIXELS) -> EncodedJpeg | None:
    """The bytes wrapped for device decoding, or None when the row must take the CPU path.

    Reads the header only (no pixel is decoded). Never raises: every refusal is left to
    `decode_image` on the CPU path, so error reasons are the same with or without the GPU."""
    if not isinstance(data, (bytes, bytearray)) or not 0 < len(data) <= limits.max_bytes:
        return None
    if not data.startswith(JPEG_SOI) or not data.endswith(JPEG_EOI):  # truncated or trailing bytes: CPU
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt, mode, (width, height) = image.format, image.mode, image.size
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - the CPU path says why
        return None
    if fmt != "JPEG" or mode not in ("RGB", "L") or orientation not in (None, 1):
        return None
    if width * height > min(limits.max_pixels, device_max_pixels) or min(width, height) < limits.min_side:
        return None
    return EncodedJpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), width, height)


def decode_jpegs(datas: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor | Exception]:
    """Decode JPEGs to uint8 RGB (3, H, W) tensors on `device`: one batched call, and one call per
    image if the batch fails, so a bad image costs only itself (its entry is the exception)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not datas:
        return []
    try:
        return list(decode_jpeg(list(datas), mode=ImageReadMode.RGB, device=device))
    except Exception:  # noqa: BLE001 - find the culprits one by one
        pass
    out: list[torch.Tensor | Exception] = []
    for data in datas:
        try:
            out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


@dataclass(frozen=True)
class DevicePreprocess:
    """A torchvision eval transform (resize the short side, centre-crop, to [0, 1], normalise),
    re-expressed on uint8 image tensors so it runs on the device where they were decoded.

    Matches PIL to about 1/255 per pixel: the resize is antialiased like PIL's, and its result
    is rounded and clamped to 8 bits as PIL's is, before scaling to [0, 1]."""

    resize: int
    interpolation: Any
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_transform(cls, transform: Any) -> "DevicePreprocess | None":
        """The device version of `transform`, or None where it has a step this cannot reproduce."""
        from torchvision import transforms as T

        steps = getattr(transform, "transforms", None)
        if steps is None:
            return None
        resize = crop = normalize = None
        to_tensor = False
        for step in steps:
            name = type(step).__name__
            if isinstance(step, T.Resize) and resize is None and crop is None:
                size = step.size if isinstance(step.size, int) else (step.size[0] if len(step.size) == 1 else None)
                if size is None or step.max_size is not None:
                    return None
                resize = (int(size), step.interpolation)
            elif isinstance(step, T.CenterCrop) and crop is None:
                crop = (int(step.size[0]), int(step.size[1]))
            elif (name == "MaybeConvertMode" and getattr(step, "mode", "RGB") == "RGB") or getattr(step, "__name__", "") == "_convert_to_rgb":
                continue  # decoding with ImageReadMode.RGB already gives RGB
            elif name in ("ToTensor", "MaybeToTensor") and not to_tensor:
                to_tensor = True
            elif isinstance(step, T.Normalize) and to_tensor and normalize is None:
                normalize = (tuple(float(m) for m in step.mean), tuple(float(s) for s in step.std))
            else:
                return None
        if resize is None or crop is None or not to_tensor:
            return None
        mean, std = normalize if normalize else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        return cls(resize[0], resize[1], crop, mean, std)

    def __call__(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 (3, H, W) images -> normalised float32 (3, crop_h, crop_w) tensors, same device."""
        import torchvision.transforms.functional as F

        if not images:
            return []
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(tuple(image.shape), []).append(i)
        out: list[torch.Tensor | None] = [None] * len(images)
        for indices in by_shape.values():  # images of one size are resized together: a few kernels per size
            x = torch.stack([images[i] for i in indices]).float()
            x = F.resize(x, [self.resize], interpolation=self.interpolation, antialias=True)
            x = F.center_crop(x, list(self.crop)).clamp_(0, 255).round_().div_(255)
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
            for i, tensor in zip(indices, x.sub_(mean).div_(std).unbind(0)):
                out[i] = tensor
        return out  # type: ignore[return-value]


@dataclass(frozen=True)
class DecodedImage:
    """A row decoded on the CPU (not a JPEG the device decodes: PNG, CMYK, rotated, ...), as
    8-bit RGB pixels, waiting to be resized and normalised on the device with the JPEGs."""

    pixels: torch.Tensor  # uint8 (H, W, 3), CPU

    @classmethod
    def of(cls, image: Image.Image) -> "DecodedImage":
        import numpy as np

        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return cls(torch.from_numpy(np.array(rgb, dtype=np.uint8)))


def decode_and_preprocess(
    items: Sequence[EncodedJpeg | DecodedImage],
    device: torch.device,
    preprocess: DevicePreprocess,
    fallback: Callable[[EncodedJpeg], Any],
) -> list[Any]:
    """Model inputs for `items`, preprocessed on `device`: JPEGs decoded there, CPU-decoded pixels
    copied there. A JPEG the device decoder refuses (or decodes to a size its header did not
    announce) goes to `fallback` instead."""
    jpegs = [i for i, item in enumerate(items) if isinstance(item, EncodedJpeg)]
    decoded = decode_jpegs([items[i].data for i in jpegs], device)  # type: ignore[union-attr]
    images: dict[int, torch.Tensor] = {}
    for i, image in zip(jpegs, decoded):
        jpeg = items[i]
        if isinstance(image, torch.Tensor) and tuple(image.shape) == (3, jpeg.height, jpeg.width):  # type: ignore[union-attr]
            images[i] = image
    for i, item in enumerate(items):
        if isinstance(item, DecodedImage):
            pixels = item.pixels.pin_memory() if device.type == "cuda" else item.pixels
            images[i] = pixels.to(device, non_blocking=True).permute(2, 0, 1)
    order = sorted(images)
    out: list[Any] = [None] * len(items)
    for i, tensor in zip(order, preprocess([images[i] for i in order])):
        out[i] = tensor
    for i, item in enumerate(items):
        if i not in images:
            out[i] = fallback(item)  # type: ignore[arg-type]
    return out
