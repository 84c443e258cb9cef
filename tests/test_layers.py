import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgecnn.zoo.models.layers import (
    Hardsigmoid, Hardswish, SiLU, StochasticDepth, batchnorm_as_depthwise_conv, make_divisible,
    replace_unfused_batchnorms,
)

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`


@pytest.mark.parametrize("value,expected", [(32 * 0.35, 16), (16 * 0.35, 8), (24 * 0.75, 24), (1280 * 1.4, 1792),
                                            (96 * 0.5, 48), (20, 24), (12, 16), (3, 8)])
def test_make_divisible(value, expected):
    assert make_divisible(value) == expected
    assert expected % 8 == 0 and expected >= 0.9 * value


@pytest.mark.parametrize("ours,theirs", [(SiLU(), F.silu), (Hardsigmoid(), F.hardsigmoid), (Hardswish(), F.hardswish)])
def test_export_friendly_activations_compute_what_pytorch_computes(ours, theirs):
    x = torch.linspace(-8, 8, 10_001)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)


def test_batchnorm_as_depthwise_conv_is_the_same_function():
    bn = nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 5, 5)
    conv = batchnorm_as_depthwise_conv(bn)
    assert conv.groups == 6 and conv.kernel_size == (1, 1)
    torch.testing.assert_close(conv(x), bn(x), rtol=1e-5, atol=1e-5)


class _ConcatThenNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.bn_after_concat = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 1)
        self.bn_after_conv = nn.BatchNorm2d(8)

    def forward(self, x):
        y = self.bn_after_concat(torch.cat([self.a(x), self.b(x)], 1))
        return self.bn_after_conv(self.conv(y))


def test_only_unfoldable_batchnorms_are_replaced_and_outputs_do_not_change():
    model = _ConcatThenNorm()
    model.train()
    for _ in range(3):
        model(torch.randn(4, 3, 8, 8))  # give the norms non-trivial statistics
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    replace_unfused_batchnorms(model)
    assert isinstance(model.bn_after_concat, nn.Conv2d)
    assert isinstance(model.bn_after_conv, nn.BatchNorm2d)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_stochastic_depth_is_identity_in_eval_and_drops_rows_in_training():
    sd = StochasticDepth(0.5)
    x = torch.ones(64, 3, 2, 2)
    assert torch.equal(sd.eval()(x), x)
    y = sd.train()(x)
    kept = y.flatten(1).amax(1)
    assert set(kept.tolist()) == {0.0, 2.0}
