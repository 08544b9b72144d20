"""EfficientNet-Lite0 on the CPU: its pointwise convolutions go to oneDNN at any thread count."""
from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from signals.embedders.efficientnet import OneDnnPointwiseConv, default_weights_path, load_efficientnet
from tests.reference import efficientnet_model

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="a torch built without oneDNN")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batch(rows: int = 8) -> torch.Tensor:
    return torch.randn(rows, 3, 224, 224, generator=torch.Generator().manual_seed(rows)).contiguous(memory_format=torch.channels_last)


def test_a_single_threaded_forward_of_a_small_batch_never_takes_the_im2col_path(one_thread) -> None:
    model = load_efficientnet(default_weights_path(), torch.device("cpu"))
    assert sum(isinstance(m, OneDnnPointwiseConv) for m in model.modules()) == 32  # every 1x1 convolution of Lite0
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model.extract_features(batch())
    ops = {event.key for event in prof.key_averages()}
    assert "aten::mkldnn_convolution" in ops and "aten::_slow_conv2d_forward" not in ops


def test_the_rerouted_model_gives_the_packages_features(one_thread) -> None:
    x = batch()
    with torch.inference_mode():
        ours = load_efficientnet(default_weights_path(), torch.device("cpu")).extract_features(x)
        reference = efficientnet_model().extract_features(x.contiguous())
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
