"""The XNNPACK rewrites compute what they replace, and leave the model they were given untouched."""
import pytest
import torch
from torch import nn

import edgecnn
from edgecnn.passes.modules import ZeroPaddedMaxPool, for_xnnpack

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`


def _trained_looking(name, alpha, resolution):
    torch.manual_seed(0)
    model = edgecnn.create_model(name, alpha=alpha, num_classes=10).eval()
    for m in model.modules():  # BatchNorms that are not identities, so a wrong fold would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model, torch.randn(2, 3, resolution, resolution)


@pytest.mark.parametrize("name, alpha, resolution, rewritten", [
    ("resnet18", 0.25, 64, ZeroPaddedMaxPool),
    ("densenet121", 0.25, 64, nn.Conv2d),  # transitions' pools and the BatchNorms on concatenations
    ("inception_v3", 0.25, 107, nn.Conv2d),  # the branch pools
    ("vgg16", 0.25, 32, nn.Identity),  # 1x1 -> 7x7 adaptive pool folded into the first Linear
    ("googlenet", 0.25, 64, None),  # ceil-mode pools: left as they are
])
def test_rewrites_are_the_same_function(name, alpha, resolution, rewritten):
    model, x = _trained_looking(name, alpha, resolution)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model(x)
        rewritten_model = for_xnnpack(model, x[:1], int8=True)
        got = rewritten_model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    changed = [m for n, m in rewritten_model.named_modules() if n and not isinstance(m, type(dict(model.named_modules()).get(n)))]
    if rewritten is None:
        assert changed == []
    else:
        assert any(isinstance(m, rewritten) for m in changed)


def test_a_max_pool_on_signed_values_keeps_its_minus_infinity_padding():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, 2, 1)).eval()
    out = for_xnnpack(model, torch.randn(1, 3, 16, 16), int8=False)
    assert isinstance(out[1], nn.MaxPool2d) and out[1].padding == 1
