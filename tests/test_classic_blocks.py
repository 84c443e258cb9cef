"""The design literature's hand arithmetic, reproduced by profiling single blocks.

Counts are conv weights only (no bias, no BatchNorm). Each expected figure is computed here from the
block's description; the literal beside it is the figure the issue quotes, kept as a cross-check.
"""
import torch

import edgecnn
from edgecnn.zoo.models.inception import InceptionModule
from edgecnn.zoo.models.resnet import BasicBlock, Bottleneck
import pytest

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`


def conv_weights(module: torch.nn.Module, channels: int, resolution: int) -> int:
    prof = edgecnn.profile(module, resolution, in_channels=channels)
    return sum(layer.params for layer in prof.layers if layer.kind == "Conv2d")


def k(kernel: int, cin: int, cout: int) -> int:
    return kernel * kernel * cin * cout


def test_basic_block_two_3x3_convs_at_256_channels():
    expected = k(3, 256, 256) + k(3, 256, 256)
    assert expected == 1_179_648
    assert conv_weights(BasicBlock(256, 256), 256, 14) == expected


def test_bottleneck_256_64_64_256():
    expected = k(1, 256, 64) + k(3, 64, 64) + k(1, 64, 256)
    assert expected == 69_632
    block = Bottleneck(256, 64)
    assert block.downsample is None
    assert conv_weights(block, 256, 14) == expected


def test_naive_inception_module_on_28x28x192():
    expected = k(1, 192, 32) + k(3, 192, 64) + k(5, 192, 32) + k(1, 192, 32)
    assert expected == 276_480
    module = InceptionModule.naive(192, 32, 64, 32, pool_proj=32)
    assert conv_weights(module, 192, 28) == expected
    assert edgecnn.profile(module, 28, in_channels=192).output_shape == (1, 32 + 64 + 32 + 32, 28, 28)


def test_naive_inception_module_without_pool_projection_passes_the_pool_through():
    module = InceptionModule.naive(192, 32, 64, 32)
    assert conv_weights(module, 192, 28) == k(1, 192, 32) + k(3, 192, 64) + k(5, 192, 32)
    assert edgecnn.profile(module, 28, in_channels=192).output_shape == (1, 32 + 64 + 32 + 192, 28, 28)


def test_inception_module_with_reductions():
    module = InceptionModule.reduced(192, 64, 96, 128, 16, 32, 32)
    prof = edgecnn.profile(module, 28, in_channels=192)
    assert prof.output_shape == (1, 256, 28, 28)
    expected = k(1, 192, 64) + k(1, 192, 96) + k(3, 96, 128) + k(1, 192, 16) + k(5, 16, 32) + k(1, 192, 32)
    assert conv_weights(module, 192, 28) == expected
    naive = conv_weights(InceptionModule.naive(192, 64, 128, 32, pool_proj=32), 192, 28)
    assert expected < 0.5 * naive  # what the reductions are for
    macs_naive = edgecnn.profile(InceptionModule.naive(192, 64, 128, 32, pool_proj=32), 28, in_channels=192).macs
    assert prof.macs == expected * 28 * 28 and prof.macs < 0.5 * macs_naive


def test_googlenet_paper_kernel_differs_from_torchvision_only_in_the_5x5_branch():
    ours = edgecnn.create_model("googlenet", kernel_5x5=5)
    assert ours.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert edgecnn.create_model("googlenet").inception3a.branch3[1].conv.kernel_size == (3, 3)


def test_zero_init_residual_starts_blocks_as_identity_but_a_loaded_checkpoint_decides_outputs():
    plain = edgecnn.create_model("resnet18")
    zeroed = edgecnn.create_model("resnet18", zero_init_residual=True)
    assert all(not b.bn2.weight.any() for b in zeroed.modules() if isinstance(b, BasicBlock))
    assert all(not b.bn3.weight.any() for b in edgecnn.create_model(
        "resnet50", zero_init_residual=True).modules() if isinstance(b, Bottleneck))
    assert all(b.bn2.weight.all() for b in plain.modules() if isinstance(b, BasicBlock))
    zeroed.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(zeroed(x), plain(x), rtol=0, atol=0)


def test_shortcuts_project_only_where_the_shape_changes():
    model = edgecnn.create_model("resnet34")
    projections = [name for name, m in model.named_modules() if name.endswith("downsample")]
    assert projections == ["layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]


def test_resnext_and_wide_resnet_widen_the_3x3():
    resnext = edgecnn.create_model("resnext50_32x4d")
    wide = edgecnn.create_model("wide_resnet50_2")
    assert resnext.layer1[0].conv2.groups == 32 and resnext.layer1[0].conv2.out_channels == 128
    assert wide.layer4[0].conv2.out_channels == 1024 and wide.layer4[0].conv3.out_channels == 2048


def test_densenet_concatenates_growth_per_layer():
    model = edgecnn.create_model("densenet121")
    prof = edgecnn.profile(model, 224)
    shapes = {layer.name: layer.output_shape for layer in prof.layers}
    assert shapes["features.transition1.conv"] == (1, 128, 56, 56)  # (64 + 6 x 32) / 2
    assert shapes["features.norm5"] == (1, 1024, 7, 7)


def test_vgg16_with_and_without_batchnorm():
    plain, bn = edgecnn.create_model("vgg16"), edgecnn.create_model("vgg16_bn")
    convs = [m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13 and all(m.kernel_size == (3, 3) for m in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules()) == 13
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
