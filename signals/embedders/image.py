"""What every image embedder shares: safe decoding, a preprocessing transform, a stacked batch.

CPU path (the default): `prepare` decodes with limits and applies the model's transform, one row
at a time, on the runner's prefetch thread; the batch is stacked and, on a GPU, copied from
pinned memory without blocking, as channels-last.

Device path (`params.gpu_decode`, see signals/embedders/gpu_decode.py): `prepare` checks the
JPEG header and keeps the bytes (other formats: decodes them on the CPU and keeps the pixels);
`prepare_batch` (on a prefetch thread, so while the model runs the previous batch) decodes the
JPEGs with nvJPEG and resizes and normalises every row on the GPU. `gpu_decode: true` uses it where the model is on a GPU; `gpu_decode: force` uses it on
whatever device the model is (torchvision decodes on the CPU too), which the tests use.
"""
from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from PIL import Image

from signals.base import RowError
from signals.decode import InputError
from signals.embedders.base import Embedder
from signals.embedders.gpu_decode import (
    DEFAULT_DEVICE_MAX_PIXELS,
    HOST_ROW_MAX_PIXELS,
    DecodedImage,
    DevicePreprocess,
    EncodedJpeg,
    decode_and_preprocess,
    jpeg_for_device,
)
from signals.inputs import ImageInput
from signals.profiling import stage_times

log = logging.getLogger(__name__)

GPU_DECODE_MODES = (False, True, "force")


def device_decode_wanted(mode: Any, device: torch.device) -> bool:
    """Whether `params.gpu_decode` = `mode` asks for device decoding on `device`."""
    if isinstance(mode, str) and mode.lower() in ("true", "false"):
        mode = mode.lower() == "true"
    if mode is None:
        mode = False
    if mode not in GPU_DECODE_MODES:
        raise ValueError(f"params.gpu_decode must be one of {GPU_DECODE_MODES}, not {mode!r}")
    return mode == "force" or (mode is True and device.type == "cuda")


_streams = threading.local()


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """This thread's own CUDA stream on `device` (the prefetch thread's, in the runner)."""
    streams = getattr(_streams, "by_device", None)
    if streams is None:
        streams = _streams.by_device = {}
    if device not in streams:
        streams[device] = torch.cuda.Stream(device=device)
    return streams[device]


def resize_short_side(transform: Any) -> int | None:
    """N where `transform` resizes the short side of an image to N (torchvision's Resize(N))."""
    from torchvision import transforms as T

    for step in getattr(transform, "transforms", [transform]):
        if isinstance(step, T.Resize):
            size = step.size
            if isinstance(size, int):
                return size
            return int(size[0]) if len(size) == 1 else None
    return None


class ImageEmbedder(ImageInput, Embedder):
    """Decode -> transform (on the CPU, per row) -> stack -> image model; or, with gpu_decode,
    header check (CPU, per row) -> decode and transform on the device (per batch) -> model."""

    run_params: ClassVar[tuple[str, ...]] = ("gpu_decode", "gpu_decode_max_pixels")
    _device_preprocess: DevicePreprocess | None = None

    @property
    @abstractmethod
    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """The preprocessing that turns a decoded RGB image into the model's input tensor."""

    @abstractmethod
    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's image features for a batch already on the device."""

    def load(self, gpu_addresses: tuple[str, ...] = ()) -> ImageEmbedder:
        super().load(gpu_addresses)
        self._device_preprocess = None
        if device_decode_wanted(self.config.params.get("gpu_decode", False), self.device):
            self._device_preprocess = DevicePreprocess.from_transform(self.transform)
            if self._device_preprocess is None:
                log.warning("%s: gpu_decode is on but the transform %r cannot run on the device; decoding on the CPU",
                            self.signal, self.transform)
        return self

    @property
    def decodes_on_device(self) -> bool:
        """Whether rows that are plain JPEGs are decoded and preprocessed on the model's device."""
        return self._device_preprocess is not None

    @property
    def resize_short_side(self) -> int | None:
        """The short side the model's transform resizes to: the decode limits bound the result."""
        return resize_short_side(self.transform)

    @property
    def device_max_pixels(self) -> int:
        """Images larger than this are never sent to the device (`params.gpu_decode_max_pixels`)."""
        return int(self.config.params.get("gpu_decode_max_pixels", DEFAULT_DEVICE_MAX_PIXELS))

    def prepare(self, row: Mapping[str, Any]) -> torch.Tensor | EncodedJpeg | DecodedImage:
        data = self.image_bytes(row)
        if self.decodes_on_device:
            with stage_times.time("header", 1):
                jpeg = jpeg_for_device(data, self.config.decode, self.device_max_pixels, self.resize_short_side)
            if jpeg is not None:
                return jpeg
        with stage_times.time("decode", 1):
            image = self.decode_bytes(data)
        if self.decodes_on_device and image.width * image.height <= min(self.device_max_pixels, HOST_ROW_MAX_PIXELS):
            with stage_times.time("preprocess", 1):  # held whole until its batch runs: a batch of them stays within 4 MB a row
                return DecodedImage.of(image)  # resized and normalised on the device
        with stage_times.time("preprocess", 1):
            return self.transform(image)

    def _cpu_fallback(self, item: EncodedJpeg | DecodedImage) -> torch.Tensor | RowError:
        """A row the device could not take, decoded (if need be) and transformed on the CPU."""
        try:
            if isinstance(item, DecodedImage):
                return self.transform(Image.fromarray(item.rgb().contiguous().numpy(), mode="RGB"))
            return self.transform(self.decode_bytes(item.data))
        except InputError as exc:
            return RowError(str(exc))
        except Exception as exc:  # noqa: BLE001 - one row's failure is that row's error
            return RowError(f"preprocessing failed: {type(exc).__name__}: {exc}")

    def materialise(self, inputs: list[Any]) -> list[Any]:
        """Model inputs for prepared rows: EncodedJpeg rows decoded and DecodedImage rows copied
        to the device, both resized and normalised there (a RowError where neither the device
        nor the CPU can decode a row); tensors as they are."""
        pending = [i for i, p in enumerate(inputs) if isinstance(p, (EncodedJpeg, DecodedImage))]
        if not pending:
            return list(inputs)
        out = list(inputs)
        with stage_times.time("device_decode", len(pending)), torch.inference_mode():
            if self._device_preprocess is None:  # device decoding was switched off after prepare
                done = [self._cpu_fallback(inputs[i]) for i in pending]
            else:
                done = decode_and_preprocess([inputs[i] for i in pending], self.device, self._device_preprocess, self._cpu_fallback)
        for i, value in zip(pending, done):
            out[i] = value
        return out

    @property
    def prepares_batches(self) -> bool:
        return self.decodes_on_device or (self.device is not None and self.device.type == "cuda")

    def prepare_batch(self, inputs: list[Any]) -> list[Any]:
        """On the prefetch thread: decode device rows, and on a GPU put the whole batch there
        (one pinned, non-blocking copy), so the model finds it ready.

        On a GPU this runs on a side stream of its own (PyTorch's streams do not synchronise with
        the default one), so decoding overlaps the model's kernels, and waits for that stream
        before handing the batch over: the model's thread gets finished tensors. Their memory is
        not reused early: the model's thread frees them only after `embed` has copied its
        output to the host, which waits for every kernel that read them."""
        if self.device is None or (self.device.type != "cuda" and not any(isinstance(p, (EncodedJpeg, DecodedImage)) for p in inputs)):
            return inputs
        if self.device.type != "cuda":
            return self.materialise(inputs)
        stream = _side_stream(self.device)
        with torch.cuda.stream(stream):
            items = self.materialise(inputs)
            on_cpu = [i for i, t in enumerate(items) if isinstance(t, torch.Tensor) and t.device.type == "cpu"]
            if on_cpu:
                with stage_times.time("to_device", len(on_cpu)):
                    moved = self.to_device(torch.stack([items[i] for i in on_cpu])).unbind(0)
                for i, tensor in zip(on_cpu, moved):
                    items[i] = tensor
        with stage_times.time("device_wait", len(items)):
            stream.synchronize()
        return items

    def compute(self, prepared: list[Any]) -> list[Any]:
        items = self.materialise(prepared)
        good = [i for i, item in enumerate(items) if not isinstance(item, RowError)]
        out: list[Any] = list(items)
        if good:
            for i, vector in zip(good, self.embed([items[i] for i in good])):
                out[i] = vector
        return out

    def forward(self, prepared: list[torch.Tensor]) -> torch.Tensor:
        """The model on the batch, padded with zero images to `batch_size` rows when it holds at
        least half that: nearly every forward pass then has the same shapes, so its activations
        fit the memory the previous pass freed (short batches leave holes the next full one
        cannot use, and the heap creeps up), and the GPU reuses its tuned kernels. The padding
        rows' outputs are dropped. A smaller batch (a tiny job's only one) runs as it is.
        Channels-last on every device: cuDNN's and oneDNN's convolutions run fastest with it
        (docs/history.md)."""
        if all(t.device.type == "cpu" for t in prepared):
            batch = self.to_device(torch.stack(prepared))
        else:
            batch = torch.stack([t.to(self.device, non_blocking=True) for t in prepared])
        rows = batch.shape[0]
        if self.batch_size // 2 <= rows < self.batch_size:
            batch = torch.cat([batch, batch.new_zeros((self.batch_size - rows, *batch.shape[1:]))])
        batch = batch.contiguous(memory_format=torch.channels_last)
        return self.image_features(batch)[:rows]
