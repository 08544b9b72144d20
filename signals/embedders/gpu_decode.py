"""JPEG decoding and preprocessing on the model's device (`params.gpu_decode`).

On a GPU the CPU is what limits image throughput: decoding and resizing a 512 px JPEG costs a
CPU core several milliseconds, the model a few microseconds. With `gpu_decode`, `prepare` only
reads the header (tens of microseconds) and keeps the bytes; the batch is decoded with
`torchvision.io.decode_jpeg(device=...)` (nvJPEG on CUDA) and resized, cropped and normalised
there, reproducing the model's own torchvision preprocessing (`DevicePreprocess`).

Safety is unchanged: only a plain JPEG (baseline or progressive Huffman, RGB or grayscale, no EXIF
rotation, ending in an EOI marker, within `signals.decode.DecodeLimits` - JPEG allowed, size,
aspect ratio, resized size and scans - and the device pixel budget) is kept for the device. Anything else - PNG, CMYK, rotated, truncated, oversized,
corrupt, null - is decoded on the CPU (`signals.decode.decode_image`), which applies the limits
and gives the same error reasons as without `gpu_decode`; its pixels are then resized and
normalised on the device with the JPEGs (`DecodedImage`), the expensive part of the CPU path.
A JPEG the device decoder refuses is decoded and transformed on the CPU instead; if that fails
too the row is an error row, never the batch.
"""
from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any  # noqa: UP035 - TorchScript reads List[...] annotations

import torch
from PIL import Image

from signals.decode import DecodeLimits, check_jpeg, check_jpeg_markers, check_resized, check_size, jpeg_frame

JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
DEVICE_FRAMES = (0xC0, 0xC1, 0xC2)  # baseline, extended and progressive Huffman: what nvJPEG decodes as the CPU path does
DEFAULT_DEVICE_MAX_PIXELS = 16 * 1024 * 1024  # bigger images are decoded on the CPU, one at a time
DEVICE_CALL_MAX_PIXELS = 256 * 1024 * 1024  # full-size pixels decoded on the device at once (768 MB as RGB)
HOST_ROW_MAX_PIXELS = 1024 * 1024  # a CPU-decoded image kept whole for the device (4 MB); larger ones are transformed on the CPU
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class EncodedJpeg:
    """A row's JPEG bytes, header checked, waiting to be decoded on the device."""

    data: bytes  # as the row holds them: the batch makes its tensors at once (decode_jpegs)
    width: int
    height: int


def jpeg_for_device(data: Any, limits: DecodeLimits, device_max_pixels: int = DEFAULT_DEVICE_MAX_PIXELS,
                    resize_short_side: int | None = None) -> EncodedJpeg | None:
    """The bytes wrapped for device decoding, or None when the row must take the CPU path.

    Reads the header only (no pixel is decoded), and only as a JPEG, where JPEG is an allowed
    format. Never raises: every refusal (the limits, the resized size, anything PIL raises on
    the header or its EXIF) is left to `decode_image` on the CPU path, so error reasons are the
    same with or without the GPU."""
    if not isinstance(data, (bytes, bytearray)) or not 0 < len(data) <= limits.max_bytes or "JPEG" not in limits.formats:
        return None
    if not data.startswith(JPEG_SOI) or not data.endswith(JPEG_EOI):  # truncated or trailing bytes: CPU
        return None
    try:
        check_jpeg_markers(data)  # before our walk of its segments and PIL's
        if jpeg_frame(data) not in DEVICE_FRAMES:  # lossless, hierarchical, arithmetic-coded, or no frame found: CPU
            return None
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            fmt, mode, (width, height) = image.format, image.mode, image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            check_jpeg(data, image, limits)
        check_size(width, height, mode, limits)
        check_resized(width, height, resize_short_side, limits)
    except Exception:  # noqa: BLE001 - the CPU path says why
        return None
    if fmt != "JPEG" or mode not in ("RGB", "L") or orientation not in (None, 1):
        return None
    if width * height > device_max_pixels:
        return None
    return EncodedJpeg(bytes(data), width, height)


def byte_tensors(datas: Sequence[bytes]) -> list[torch.Tensor]:
    """The batch's encoded images as uint8 tensors: views of one tensor holding them all, made
    in a few calls; a tensor made per row costs an allocation and a Python call each, holding
    the GIL that a GPU worker's other threads wait for (docs/history.md)."""
    if not datas:
        return []
    joined = torch.frombuffer(bytearray().join(datas), dtype=torch.uint8)
    return list(joined.split([len(data) for data in datas]))


def decode_jpegs(encoded: Sequence[bytes], device: torch.device) -> list[torch.Tensor | Exception]:
    """Decode JPEGs to uint8 RGB (3, H, W) tensors on `device`: one batched call, and one call per
    image if the batch fails, so a bad image costs only itself (its entry is the exception)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    datas = byte_tensors(encoded)
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
    interpolation: str  # torch.nn.functional.interpolate's mode
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_transform(cls, transform: Any) -> DevicePreprocess | None:
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
                mode = step.interpolation.value
                if size is None or step.max_size is not None or mode not in _ANTIALIASED_MODES:
                    return None
                resize = (int(size), mode)
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
        if resize is None or crop is None or not to_tensor or max(crop) > resize[0]:
            return None  # a crop larger than the resized image would need torchvision's padding
        mean, std = normalize if normalize else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        return cls(resize[0], resize[1], crop, mean, std)

    def __call__(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 (3, H, W) images -> normalised float32 (3, crop_h, crop_w) tensors, same device.

        Each image is resized and cropped on its own (a corpus rarely has two images of one
        size) into one batch tensor, which is then rounded and normalised in a few whole-batch
        kernels with the constants as scalars: no host-to-device copy, so nothing here waits for
        the device (a small tensor made from a list on a GPU is a synchronous copy)."""
        if not images:
            return []
        batch = torch.empty((len(images), len(self.mean), *self.crop), dtype=torch.float32, device=images[0].device)
        _resize_and_crop_fn()(list(images), self.resize, self.crop[0], self.crop[1], self.interpolation, batch)
        batch.clamp_(0, 255).round_()  # 8 bits, as PIL's resize gives
        for channel, (mean, std) in enumerate(zip(self.mean, self.std)):
            batch[:, channel].mul_(1.0 / (255.0 * std)).sub_(mean / std)  # (x / 255 - mean) / std
        return list(batch.unbind(0))


_ANTIALIASED_MODES = ("bilinear", "bicubic")  # torchvision's modes that interpolate(antialias=True) takes, by the same names


def _resize_and_crop(images: list[torch.Tensor], size: int, crop_h: int, crop_w: int, mode: str, out: torch.Tensor) -> None:
    """Into out[i]: images[i] (uint8, 3 x H x W) with its short side resized to `size`
    (antialiased) and centre-cropped, as torchvision's Resize(size) and CenterCrop do (same
    output size and offsets; the crop must fit). Written in TorchScript's subset of Python."""
    for i, image in enumerate(images):
        h, w = image.shape[-2], image.shape[-1]
        if w <= h:
            new_h, new_w = int(size * h / w), size
        else:
            new_h, new_w = size, int(size * w / h)
        resized = torch.nn.functional.interpolate(image.unsqueeze(0).float(), size=[new_h, new_w], mode=mode,
                                                  align_corners=False, antialias=True)
        top, left = int(round((new_h - crop_h) / 2.0)), int(round((new_w - crop_w) / 2.0))
        out[i] = resized[0, :, top : top + crop_h, left : left + crop_w]


@functools.cache
def _resize_and_crop_fn() -> Callable[..., None]:
    """`_resize_and_crop` compiled by TorchScript where it can be, else as Python.

    Compiled, the whole loop is one call that runs without the GIL; in Python every image's
    few tensor calls release and retake it, and on a GPU worker whose prepare threads hold the
    GIL that wait, not the device, sets the pace (the paired rounds are in docs/history.md).
    torch.jit.script is deprecated; the Python loop computes the same tensors where it is gone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.script(_resize_and_crop)
    except Exception:  # noqa: BLE001 - a torch without TorchScript: same result, slower
        return _resize_and_crop


@dataclass(frozen=True)
class DecodedImage:
    """A row decoded on the CPU (not a JPEG the device decodes: PNG, CMYK, rotated, ...), as
    8-bit RGB pixels, waiting to be resized and normalised on the device with the JPEGs."""

    pixels: torch.Tensor  # uint8 (H, W, C), CPU: RGB, and where Pillow's memory is shared its padding byte (C = 4)

    @classmethod
    def of(cls, image: Image.Image) -> DecodedImage:
        """The image's pixels, shared with Pillow (which keeps RGB as 4 bytes a pixel) through
        Arrow where they lie in one block, else copied: a copy (`np.array` calls `tobytes`)
        holds the GIL for the whole image while a GPU worker's other threads wait."""
        import numpy as np
        import pyarrow as pa

        rgb = image if image.mode == "RGB" else image.convert("RGB")
        try:
            pixels = torch.from_dlpack(pa.array(rgb).values).view(rgb.height, rgb.width, 4)
        except ValueError:  # a large image's rows lie in several blocks: nothing to share
            pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8))
        return cls(pixels)

    def rgb(self) -> torch.Tensor:
        """The pixels as uint8 RGB (H, W, 3), without the padding byte."""
        return self.pixels[..., :3]


def decode_and_preprocess(
    items: Sequence[EncodedJpeg | DecodedImage],
    device: torch.device,
    preprocess: DevicePreprocess,
    fallback: Callable[[EncodedJpeg], Any],
    max_pixels: int = DEVICE_CALL_MAX_PIXELS,
) -> list[Any]:
    """Model inputs for `items`, preprocessed on `device`: JPEGs decoded there, CPU-decoded pixels
    copied there. A JPEG the device decoder refuses (or decodes to a size its header did not
    announce) goes to `fallback` instead.

    Items go in runs of at most `max_pixels` full-size pixels (an item larger than that alone),
    each decoded and reduced to model inputs before the next: the device then holds one run's
    decoded images whatever the batch size (a batch of 512 photos of 12 megapixels decoded at
    once would hold 18 GB)."""
    out: list[Any] = []
    start = 0
    while start < len(items):
        end, pixels = start + 1, _pixels(items[start])
        while end < len(items) and pixels + _pixels(items[end]) <= max_pixels:
            pixels += _pixels(items[end])
            end += 1
        out += _decode_and_preprocess_run(items[start:end], device, preprocess, fallback)
        start = end
    return out


def _pixels(item: EncodedJpeg | DecodedImage) -> int:
    """Full-size pixels of a row waiting for the device."""
    return item.width * item.height if isinstance(item, EncodedJpeg) else item.pixels.shape[0] * item.pixels.shape[1]


def _decode_and_preprocess_run(
    items: Sequence[EncodedJpeg | DecodedImage],
    device: torch.device,
    preprocess: DevicePreprocess,
    fallback: Callable[[EncodedJpeg], Any],
) -> list[Any]:
    """`decode_and_preprocess` of one run of items, in one batched decode call."""
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
            images[i] = pixels.to(device, non_blocking=True)[..., :3].permute(2, 0, 1)  # the padding byte dropped there
    order = sorted(images)
    out: list[Any] = [None] * len(items)
    for i, tensor in zip(order, preprocess([images[i] for i in order])):
        out[i] = tensor
    for i, item in enumerate(items):
        if i not in images:
            out[i] = fallback(item)  # type: ignore[arg-type]
    return out
