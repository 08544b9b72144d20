"""The device decoding path of image embedders (`params.gpu_decode`), exercised on the CPU.

torchvision decodes JPEGs on the CPU with the same call it uses on a GPU, so `gpu_decode: force`
runs the whole device path here: header check in prepare, batch decode and preprocessing in
prepare_batch, CPU fallback, error rows. What needs a GPU (nvJPEG, pinned copies) is the same
code with another device; its selection logic is tested here.
"""
from __future__ import annotations

import io
from collections.abc import Hashable

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from benchmarks.hostile import lossless_jpeg, malformed_exif_jpeg, progressive_jpeg
from signals.base import ModelRef, RowError, SignalConfig
from signals.contracts import STATUS_ERROR, STATUS_OK
from signals.decode import MAX_JPEG_SCANS, DecodeLimits, decode_image
from signals.embedders import gpu_decode
from signals.embedders.gpu_decode import DecodedImage, DevicePreprocess, EncodedJpeg, byte_tensors, decode_jpegs, jpeg_for_device
from signals.embedders.image import ImageEmbedder, device_decode_wanted
from signals.runner import run_signal

SIZE = 32


pytestmark = pytest.mark.usefixtures("empty_model_cache")


def small_transform() -> T.Compose:
    return T.Compose([T.Resize(SIZE, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(SIZE), T.ToTensor(),
                      T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])


class PixelStatsEmbedder(ImageEmbedder):
    """A model-free image embedder: per-channel mean and standard deviation of its input."""

    dim = 6

    def resource_key(self) -> Hashable:
        return ("pixel-stats", self.config.model.version)

    def load_resources(self, device: torch.device) -> T.Compose:
        return small_transform()

    @property
    def transform(self) -> T.Compose:
        return self.resources

    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.cat([batch.mean(dim=(2, 3)), batch.std(dim=(2, 3))], dim=1) + 3.0


def make_signal(gpu_decode_mode=False, batch_size: int = 4, **params) -> PixelStatsEmbedder:
    config = SignalConfig("pixels", ModelRef("pixel-stats", "1"), batch_size, "cpu", {"gpu_decode": gpu_decode_mode, **params})
    return PixelStatsEmbedder(config).load()


def jpeg(width: int = 80, height: int = 60, mode: str = "RGB", seed: int = 0, **save) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] //= 2  # some structure, so resizing matters
    image = Image.fromarray(pixels).convert(mode)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def png(width: int = 40, height: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    return jpeg(exif=exif.tobytes())


def corrupt_scan_jpeg() -> bytes:
    """Header intact, scan data zeroed, EOI present: passes the header check, fails every decoder."""
    data = jpeg()
    return data[:400] + bytes(len(data) - 402) + b"\xff\xd9"


# ---------------------------------------------------------------------------------- selection


@pytest.mark.parametrize(
    ("mode", "device", "wanted"),
    [
        (False, "cpu", False), (False, "cuda", False), (None, "cuda", False),
        (True, "cpu", False), (True, "cuda", True), ("true", "cuda", True), ("False", "cuda", False),
        ("force", "cpu", True), ("force", "cuda", True),
    ],
)
def test_device_decoding_is_used_only_where_asked_and_useful(mode, device, wanted) -> None:
    assert device_decode_wanted(mode, torch.device(device)) is wanted


def test_an_unknown_gpu_decode_value_fails_at_load() -> None:
    with pytest.raises(ValueError, match="gpu_decode"):
        make_signal("sometimes")


def test_gpu_decode_true_on_a_cpu_worker_keeps_the_cpu_path() -> None:
    signal = make_signal(True)
    assert not signal.decodes_on_device
    assert isinstance(signal.prepare({"image": jpeg()}), torch.Tensor)


def test_gpu_batch_size_applies_only_on_a_gpu() -> None:
    signal = make_signal(batch_size=8, gpu_batch_size=512)
    assert signal.batch_size == 8
    signal.device = torch.device("cuda", 0)  # what load() picks on a GPU worker
    assert signal.batch_size == 512
    signal.config = SignalConfig("pixels", ModelRef("pixel-stats", "1"), 8, "cuda", {})
    assert signal.batch_size == 8


# ---------------------------------------------------------------------------------- header check


def test_a_plain_jpeg_is_kept_for_the_device_with_its_size() -> None:
    data = jpeg(80, 60)
    kept = jpeg_for_device(data, DecodeLimits())
    assert isinstance(kept, EncodedJpeg) and (kept.width, kept.height) == (80, 60)
    assert kept.data == data


def test_grayscale_and_progressive_jpegs_are_kept() -> None:
    assert jpeg_for_device(jpeg(mode="L"), DecodeLimits()) is not None
    assert jpeg_for_device(jpeg(progressive=True), DecodeLimits()) is not None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(None, id="null"),
        pytest.param(b"", id="empty"),
        pytest.param("not bytes", id="not-bytes"),
        pytest.param(png(), id="png"),
        pytest.param(jpeg(mode="CMYK"), id="cmyk"),
        pytest.param(rotated_jpeg(), id="exif-rotated"),
        pytest.param(jpeg()[:-200], id="truncated"),
        pytest.param(jpeg() + b"trailing", id="trailing-bytes"),
        pytest.param(b"\xff\xd8\xff\xe0" + bytes(100) + b"\xff\xd9", id="header-only-garbage"),
        pytest.param(jpeg()[:2] + b"\xff\xe5\x00\x02" * 200_000 + jpeg()[2:], id="a-flood-of-markers"),
    ],
)
def test_anything_but_a_plain_complete_jpeg_takes_the_cpu_path(data) -> None:
    assert jpeg_for_device(data, DecodeLimits()) is None


def test_the_decode_limits_and_the_device_pixel_budget_send_images_to_the_cpu() -> None:
    data = jpeg(80, 60)
    assert jpeg_for_device(data, DecodeLimits(max_bytes=len(data) - 1)) is None
    assert jpeg_for_device(data, DecodeLimits(max_pixels=80 * 60 - 1)) is None
    assert jpeg_for_device(data, DecodeLimits(min_side=61)) is None
    assert jpeg_for_device(data, DecodeLimits(), device_max_pixels=80 * 60 - 1) is None
    assert jpeg_for_device(data, DecodeLimits(max_pixels=80 * 60)) is not None


# ---------------------------------------------------------------------------------- preprocessing


def test_the_transforms_of_our_models_have_a_device_version() -> None:
    from signals.embedders.efficientnet import efficientnet_transform

    spec = DevicePreprocess.from_transform(efficientnet_transform())
    assert spec is not None and spec.resize == 224 and spec.crop == (224, 224)
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406)) and spec.std == pytest.approx((0.229, 0.224, 0.225))


def test_open_clip_preprocessing_has_a_device_version() -> None:
    open_clip = pytest.importorskip("open_clip")
    preprocess = open_clip.image_transform(224, is_train=False, mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
    spec = DevicePreprocess.from_transform(preprocess)
    assert spec is not None and spec.crop == (224, 224) and spec.mean[0] == pytest.approx(0.48145466)


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(T.Compose([T.RandomResizedCrop(SIZE), T.ToTensor()]), id="random-crop"),
        pytest.param(T.Compose([T.Resize(SIZE), T.CenterCrop(SIZE), T.Lambda(lambda x: x), T.ToTensor()]), id="lambda"),
        pytest.param(T.Compose([T.Resize((SIZE, SIZE)), T.CenterCrop(SIZE), T.ToTensor()]), id="resize-to-a-box"),
        pytest.param(T.Compose([T.Resize(SIZE), T.ToTensor()]), id="no-crop"),
        pytest.param(lambda image: image, id="not-a-compose"),
    ],
)
def test_a_transform_the_device_cannot_reproduce_is_refused(transform) -> None:
    assert DevicePreprocess.from_transform(transform) is None


def test_a_signal_whose_transform_has_no_device_version_decodes_on_the_cpu(monkeypatch) -> None:
    monkeypatch.setattr(PixelStatsEmbedder, "load_resources", lambda self, device: T.Compose([T.Resize(SIZE), T.ToTensor()]))
    signal = make_signal("force")
    assert not signal.decodes_on_device


@pytest.mark.parametrize(("width", "height"), [(80, 60), (60, 80), (20, 12), (33, 33)])
def test_device_preprocessing_matches_the_pil_transform(width: int, height: int) -> None:
    data = jpeg(width, height, seed=width)
    expected = small_transform()(decode_image(data))
    (decoded,) = decode_jpegs([data], torch.device("cpu"))
    (got,) = DevicePreprocess.from_transform(small_transform())([decoded])
    assert got.shape == expected.shape and got.dtype == torch.float32
    diff = (got - expected).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.1  # about 1/255 per pixel, normalised


@pytest.mark.parametrize("mode", [T.InterpolationMode.BICUBIC, T.InterpolationMode.BILINEAR])
@pytest.mark.parametrize("compiled", [True, False], ids=["torchscript", "python"])
def test_resize_and_crop_gives_torchvisions_resize_and_centre_crop(mode, compiled: bool) -> None:
    sizes = [(60, 80), (80, 60), (33, 33), (37, 91), (91, 37), (32, 47)]  # (h, w): either side short, square, odd offsets
    rng = np.random.default_rng(3)
    images = [torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)) for h, w in sizes]
    resize_and_crop = gpu_decode._resize_and_crop_fn() if compiled else gpu_decode._resize_and_crop
    out = torch.full((len(images), 3, SIZE, SIZE), float("nan"))
    resize_and_crop(images, SIZE, SIZE, SIZE, mode.value, out)
    for image, got in zip(images, out):
        expected = TF.center_crop(TF.resize(image.unsqueeze(0).float(), [SIZE], interpolation=mode, antialias=True), [SIZE, SIZE])[0]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_the_resize_loop_is_compiled_on_our_torch() -> None:
    assert isinstance(gpu_decode._resize_and_crop_fn(), torch.jit.ScriptFunction)  # else each image waits for the GIL


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(T.Compose([T.Resize(SIZE), T.CenterCrop(SIZE + 8), T.ToTensor()]), id="crop-larger-than-resize"),
        pytest.param(T.Compose([T.Resize(SIZE, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop(SIZE), T.ToTensor()]), id="nearest"),
    ],
)
def test_a_resize_the_device_path_cannot_match_is_refused(transform) -> None:
    assert DevicePreprocess.from_transform(transform) is None


def test_one_bad_jpeg_in_a_batch_fails_alone() -> None:
    out = decode_jpegs([jpeg(), corrupt_scan_jpeg(), jpeg(40, 30)], torch.device("cpu"))
    assert isinstance(out[1], Exception)
    assert tuple(out[0].shape) == (3, 60, 80) and tuple(out[2].shape) == (3, 30, 40)


# ---------------------------------------------------------------------------------- the signal


def corpus_frame() -> pd.DataFrame:
    images = [jpeg(80, 60, seed=1), png(), jpeg(64, 64, mode="L", seed=2), None, corrupt_scan_jpeg(), jpeg(mode="CMYK"),
              rotated_jpeg(), jpeg()[:-300], b"not an image", jpeg(30, 50, seed=3), jpeg(50, 30, seed=4, progressive=True)]
    return pd.DataFrame({"content_id": [f"c{i}" for i in range(len(images))], "image": images})


def run(signal: ImageEmbedder, frame: pd.DataFrame, prefetch: int = 2) -> pd.DataFrame:
    return pd.concat(list(run_signal(signal, [frame.iloc[:5], frame.iloc[5:]], prefetch=prefetch)), ignore_index=True)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_device_path_gives_the_cpu_paths_rows(prefetch: int) -> None:
    frame = corpus_frame()
    cpu = run(make_signal(False), frame, prefetch)
    device = run(make_signal("force"), frame, prefetch)
    assert device["status"].tolist() == cpu["status"].tolist()
    assert device["error"].tolist() == cpu["error"].tolist()
    assert cpu["status"].tolist().count(STATUS_ERROR) == 4  # null, corrupt scan, truncated, not an image
    assert "image is corrupt or truncated" in cpu["error"][4]
    for a, b in zip(cpu["vector"], device["vector"]):
        assert (a is None) == (b is None)
        if a is not None:
            assert float(np.dot(a, b)) > 0.999


def test_device_rows_are_decoded_on_the_prefetch_thread_in_batches(monkeypatch) -> None:
    calls: list[tuple[str, int]] = []
    real = gpu_decode.decode_jpegs

    def spy(datas, device):
        import threading

        calls.append((threading.current_thread().name, len(datas)))
        return real(datas, device)

    monkeypatch.setattr(gpu_decode, "decode_jpegs", spy)
    out = run(make_signal("force", batch_size=8), corpus_frame())
    assert (out["status"] == STATUS_OK).sum() == 7
    assert calls and all(name == "prefetch" for name, _ in calls)
    assert sum(n for _, n in calls) == 5  # the complete JPEGs: two RGB, gray, progressive, and the corrupt scan


def test_a_jpeg_the_device_refuses_is_decoded_on_the_cpu(monkeypatch) -> None:
    monkeypatch.setattr(gpu_decode, "decode_jpegs", lambda datas, device: [RuntimeError("nvjpeg says no")] * len(datas))
    frame = corpus_frame()
    cpu = run(make_signal(False), frame)
    fallback = run(make_signal("force"), frame)
    assert fallback["status"].tolist() == cpu["status"].tolist()
    assert fallback["error"].tolist() == cpu["error"].tolist()


def test_a_wrongly_sized_device_decode_is_not_trusted(monkeypatch) -> None:
    real = gpu_decode.decode_jpegs
    monkeypatch.setattr(gpu_decode, "decode_jpegs", lambda datas, device: [t[:, 1:, :] for t in real(datas, device)])
    out = run(make_signal("force"), corpus_frame())
    assert (out["status"] == STATUS_OK).sum() == 7


def test_compute_decodes_device_rows_that_prepare_batch_did_not() -> None:
    """A caller that uses prepare + compute directly (no runner) gets the same values."""
    signal = make_signal("force")
    prepared = [signal.prepare({"image": jpeg(seed=5)}), signal.prepare({"image": corrupt_scan_jpeg()})]
    assert all(isinstance(p, EncodedJpeg) for p in prepared)
    vector, error = signal.compute(prepared)
    assert isinstance(error, RowError) and "corrupt" in error.reason
    expected = make_signal(False).compute([make_signal(False).prepare({"image": jpeg(seed=5)})])[0]
    assert float(np.dot(vector, expected)) > 0.999


def test_prepare_batch_leaves_cpu_batches_alone() -> None:
    signal = make_signal(False)
    inputs = [signal.prepare({"image": jpeg()})]
    assert signal.prepare_batch(inputs) is inputs


def test_other_formats_are_decoded_on_the_cpu_and_preprocessed_on_the_device() -> None:
    signal = make_signal("force")
    prepared = signal.prepare({"image": png(40, 30)})
    assert isinstance(prepared, DecodedImage) and tuple(prepared.rgb().shape) == (30, 40, 3)
    assert torch.equal(prepared.rgb(), torch.from_numpy(np.array(decode_image(png(40, 30)))))
    (got,) = signal.materialise([prepared])
    expected = small_transform()(decode_image(png(40, 30)))
    assert (got - expected).abs().max() < 0.1
    assert isinstance(signal.prepare({"image": rotated_jpeg()}), DecodedImage)  # EXIF rotation applied on the CPU


def test_images_over_the_device_pixel_budget_are_transformed_on_the_cpu() -> None:
    signal = make_signal("force", gpu_decode_max_pixels=40 * 30 - 1)
    assert isinstance(signal.prepare({"image": png(40, 30)}), torch.Tensor)
    assert isinstance(signal.prepare({"image": jpeg(80, 60)}), torch.Tensor)
    assert isinstance(signal.prepare({"image": jpeg(20, 20)}), EncodedJpeg)


def test_a_cpu_decoded_image_is_kept_whole_for_the_device_only_up_to_a_row_bound() -> None:
    """Kept whole until its batch runs, a 16-megapixel PNG held 64 MB a row: a batch of 32 of them
    took a worker to 3.5 GB. Larger than the bound, it is transformed on the CPU, as without the device."""
    signal = make_signal("force")
    side = int(gpu_decode.HOST_ROW_MAX_PIXELS**0.5)
    assert isinstance(signal.prepare({"image": png(side, side)}), DecodedImage)
    assert isinstance(signal.prepare({"image": png(side + 1, side)}), torch.Tensor)


def test_the_device_decodes_a_batch_in_runs_of_bounded_pixels(monkeypatch) -> None:
    """Whatever the batch size, one call decodes at most `max_pixels` full-size pixels (an image
    larger than that alone), and the inputs are those of the batch decoded in one call."""
    items = [jpeg_for_device(jpeg(80, 60, seed=s), DecodeLimits()) for s in range(5)]
    items[2] = DecodedImage.of(decode_image(png(40, 30)))
    items.insert(3, jpeg_for_device(jpeg(200, 150), DecodeLimits()))
    preprocess = DevicePreprocess.from_transform(small_transform())
    cpu = torch.device("cpu")
    whole = gpu_decode.decode_and_preprocess(items, cpu, preprocess, lambda item: None)
    calls: list[int] = []
    real = gpu_decode.decode_jpegs
    monkeypatch.setattr(gpu_decode, "decode_jpegs", lambda datas, device: calls.append(len(datas)) or real(datas, device))
    runs = gpu_decode.decode_and_preprocess(items, cpu, preprocess, lambda item: None, max_pixels=2 * 80 * 60)
    assert calls == [2, 0, 1, 2]  # two JPEGs; the PNG's pixels; the large JPEG alone; two JPEGs
    assert all(torch.equal(a, b) for a, b in zip(whole, runs, strict=True))


def test_a_short_batch_runs_padded_channels_last_and_only_its_rows_come_back() -> None:
    signal = make_signal(batch_size=5)
    seen: list[tuple[tuple[int, ...], bool]] = []
    features = signal.image_features

    def record(batch: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(batch.shape), batch.is_contiguous(memory_format=torch.channels_last)))
        return features(batch)

    signal.image_features = record  # type: ignore[method-assign]
    prepared = [signal.prepare({"image": jpeg(seed=s)}) for s in range(3)]
    vectors = signal.embed(prepared)
    assert seen == [((5, 3, SIZE, SIZE), True)]
    expected = torch.nn.functional.normalize(features(torch.stack(prepared)), dim=-1).numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_the_header_check_applies_the_allowlist_the_aspect_and_the_resized_size() -> None:
    assert jpeg_for_device(jpeg(80, 60), DecodeLimits(formats=("PNG",))) is None
    assert jpeg_for_device(jpeg(420, 20), DecodeLimits()) is None  # aspect 21
    assert jpeg_for_device(jpeg(200, 10), DecodeLimits(), resize_short_side=224) is not None
    assert jpeg_for_device(jpeg(200, 10), DecodeLimits(max_resized_pixels=224 * 4480 - 1), resize_short_side=224) is None


def test_a_jpeg_with_malformed_exif_takes_the_cpu_path_and_becomes_an_error_row() -> None:
    data = malformed_exif_jpeg(0x0100, 2)
    assert jpeg_for_device(data, DecodeLimits()) is None
    signal = make_signal("force")
    out = pd.concat(list(run_signal(signal, [pd.DataFrame({"image": [data, jpeg(80, 60)]})])), ignore_index=True)
    assert out["status"].tolist() == [STATUS_ERROR, STATUS_OK]
    assert "corrupt" in out["error"].iloc[0]


@pytest.mark.parametrize(
    ("data", "refused", "on_device"),
    [(progressive_jpeg(1000, 1, MAX_JPEG_SCANS + 1), True, False), (progressive_jpeg(1000, 1, MAX_JPEG_SCANS), False, True),
     (lossless_jpeg(1800), False, False)],
    ids=["scans-over-the-limit", "scans-at-the-limit", "lossless"],
)
def test_jpegs_the_cpu_path_treats_apart_give_its_rows_with_the_device(data: bytes, refused: bool, on_device: bool) -> None:
    """Every scan walks the whole image in any decoder, nvJPEG's too: 10,000 empty scans of a
    2000x2000 JPEG took 4.7 s to come out an image on the device path, an error row on the CPU's.
    A lossless JPEG is decoded on the CPU, at its full size."""
    assert (jpeg_for_device(data, DecodeLimits()) is not None) == on_device
    frame = pd.DataFrame({"image": [data, jpeg(80, 60)]})
    cpu = pd.concat(list(run_signal(make_signal(False), [frame])), ignore_index=True)
    device = pd.concat(list(run_signal(make_signal("force"), [frame])), ignore_index=True)
    assert device["status"].tolist() == cpu["status"].tolist() == [STATUS_ERROR if refused else STATUS_OK, STATUS_OK]
    assert device["error"].tolist() == cpu["error"].tolist()


# ---------------------------------------------------------------------------------- few calls a row


def test_a_batchs_bytes_become_views_of_one_tensor() -> None:
    datas = [jpeg(), b"\xff", jpeg(40, 30)]
    tensors = byte_tensors(datas)
    assert [bytes(t.numpy()) for t in tensors] == datas
    assert len({t.untyped_storage().data_ptr() for t in tensors}) == 1
    assert byte_tensors([]) == []


@pytest.mark.parametrize(("width", "height", "shared"), [(40, 30, True), (2048, 2049, False)], ids=["one-block", "several-blocks"])
def test_cpu_decoded_pixels_are_shared_with_pillow_where_they_lie_in_one_block(width: int, height: int, shared: bool) -> None:
    rng = np.random.default_rng(width)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    expected = np.array(image)
    decoded = DecodedImage.of(image)
    assert decoded.pixels.shape[-1] == (4 if shared else 3)  # Pillow's padding byte comes along with its memory
    del image  # the shared memory outlives the image object
    assert np.array_equal(decoded.rgb().numpy(), expected)

