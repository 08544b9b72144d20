"""What every image embedder shares: safe decoding, a preprocessing transform, a stacked batch."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import torch
from PIL import Image

from signals.embedders.base import Embedder
from signals.inputs import ImageInput


class ImageEmbedder(ImageInput, Embedder):
    """Decode -> transform (on the CPU, per row) -> stack -> image model."""

    @property
    @abstractmethod
    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """The preprocessing that turns a decoded RGB image into the model's input tensor."""

    @abstractmethod
    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's image features for a batch already on the device."""

    def prepare(self, row: Mapping[str, Any]) -> torch.Tensor:
        return self.transform(self.decode(row))

    def forward(self, prepared: list[torch.Tensor]) -> torch.Tensor:
        batch = self.to_device(torch.stack(prepared))
        if self.device is not None and self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.image_features(batch)
