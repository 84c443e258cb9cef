"""The rewrites that keep XNNPACK's graph in one piece compute what they replace, on the zoo's own models: the
passes on the torch.export graph (pools, BatchNorms after no conv) and the one module rewrite (an adaptive
pool to a larger grid folded into the Linear after it), which leaves the model it was given untouched."""
import pytest
import torch
from torch import nn

import edgecnn
from edgecnn.passes.aten import fp32_forms, int8_forms
from edgecnn.passes.modules import for_xnnpack

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`

PADDED_MAX_POOL = "padded max pool as zero pad and pool"
AVERAGE_POOL = "average pool as depthwise conv"
FREE_BATCHNORM = "BatchNorm after no conv as depthwise conv"


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
    ("resnet18", 0.25, 64, {PADDED_MAX_POOL}),  # the stem pool, after a ReLU
    ("densenet121", 0.25, 64, {PADDED_MAX_POOL, AVERAGE_POOL, FREE_BATCHNORM}),  # transitions, concatenations
    ("inception_v3", 0.25, 107, {AVERAGE_POOL}),  # the branch pools
    ("googlenet", 0.25, 64, set()),  # ceil-mode pools: left as they are
])
def test_the_graph_passes_give_the_zoos_models_the_same_function(name, alpha, resolution, rewritten):
    model, x = _trained_looking(name, alpha, resolution)
    graph = torch.export.export(model, (x[:1],), strict=True).module()
    done = int8_forms(graph)
    assert {k for k in (PADDED_MAX_POOL, AVERAGE_POOL, FREE_BATCHNORM) if done[k]} == rewritten
    for node in graph.graph.nodes:  # every BatchNorm left is one the quantizers fold into the conv before it
        if node.target == torch.ops.aten.batch_norm.default:
            conv = node.args[0]
            assert conv.target == torch.ops.aten.conv2d.default and len(conv.users) == 1, node.name
    with torch.no_grad():
        expected, got = model(x[:1]), graph(x[:1])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_the_float_graphs_get_only_what_their_converter_needs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(3, 1, 1),
                          nn.AvgPool2d(2)).eval()
    x = torch.randn(1, 3, 24, 24)
    litert = torch.export.export(model, (x,), strict=True).module()
    assert fp32_forms(litert, pad_max_pools=True) == {PADDED_MAX_POOL: 1}
    executorch = torch.export.export(model, (x,), strict=True).module()
    # only the pool that counts its padding: XNNPACK runs the other as it is
    assert fp32_forms(executorch, average_pools_as_convs=True) == {AVERAGE_POOL: 1}
    with torch.no_grad():
        for graph in (litert, executorch):
            torch.testing.assert_close(graph(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_max_pool_on_signed_values_keeps_its_minus_infinity_padding():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, 2, 1)).eval()
    graph = torch.export.export(model, (torch.randn(1, 3, 16, 16),), strict=True).module()
    assert int8_forms(graph)[PADDED_MAX_POOL] == 0


def test_an_adaptive_pool_to_a_larger_grid_folds_into_the_linear_and_the_original_is_untouched():
    model, x = _trained_looking("vgg16", 0.25, 32)  # 1x1 -> 7x7 before the classifier
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model(x)
        rewritten = for_xnnpack(model, x[:1])
        got = rewritten(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(rewritten.avgpool, nn.Identity)
    assert rewritten.classifier[0].in_features < model.classifier[0].in_features
