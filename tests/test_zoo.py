"""Every model builds and runs, at its default resolution and across widths, and at its smallest input."""
import pytest
import torch

import edgecnn

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`

MODELS = edgecnn.list_models()
BIGGEST = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")  # 456-600 px: `make test-full` only
ALPHAS = [0.25, 0.5, 1.0, 1.4]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIGGEST else n for n in MODELS])
def test_forward_at_default_resolution_across_widths(name):
    info = edgecnn.get_model_info(name)
    for alpha in ALPHAS:
        model = edgecnn.create_model(name, alpha=alpha, num_classes=10)
        assert not model.training
        x = torch.randn(1, 3, info.default_resolution, info.default_resolution)
        with torch.inference_mode():
            y = model(x)
        assert y.shape == (1, 10), (alpha, y.shape)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", MODELS)
def test_smallest_accepted_resolution_runs_and_one_less_is_refused(name):
    info = edgecnn.get_model_info(name)
    model = edgecnn.create_model(name, alpha=0.5)
    with torch.inference_mode():
        assert model(torch.randn(2, 3, info.min_resolution, info.min_resolution)).shape == (2, 1000)
    assert edgecnn.profile(model, info.min_resolution).output_shape == (1, 1000)
    with pytest.raises(ValueError, match="too small"):
        edgecnn.profile(model, info.min_resolution - 1)


@pytest.mark.parametrize("name", MODELS)
def test_registry_records_defaults_and_reference(name):
    info = edgecnn.get_model_info(name)
    assert info.min_resolution <= info.default_resolution
    assert len(info.mean) == len(info.std) == 3 and all(0 < s < 1 for s in info.std)
    assert info.reference.top1 is not None and info.reference.source


def test_width_multiplier_scales_cost_roughly_quadratically():
    full = edgecnn.profile(edgecnn.create_model("mobilenet_v3_large"), 224).macs
    half = edgecnn.profile(edgecnn.create_model("mobilenet_v3_large", alpha=0.5), 224).macs
    assert 0.2 < half / full < 0.45
