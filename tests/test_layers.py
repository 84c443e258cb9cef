import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgecnn.zoo.models.layers import Hardsigmoid, Hardswish, SiLU, StochasticDepth, make_divisible

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


def test_stochastic_depth_is_identity_in_eval_and_drops_rows_in_training():
    sd = StochasticDepth(0.5)
    x = torch.ones(64, 3, 2, 2)
    assert torch.equal(sd.eval()(x), x)
    y = sd.train()(x)
    kept = y.flatten(1).amax(1)
    assert set(kept.tolist()) == {0.0, 2.0}
