"""The int8 remedies that keep the float function: exact in float, and they buy int8 accuracy where claimed."""
import numpy as np
import pytest
import torch
from torch import nn

import edgecnn
from edgecnn.data.datasets import get_dataset
from edgecnn.int8.remedies import _concat_groups, equalize_concat_ranges
from trained_int8 import trained_int8


def _trained_looking(name, alpha):
    torch.manual_seed(0)
    model = edgecnn.create_model(name, alpha=alpha, num_classes=10).eval()
    for m in model.modules():  # BatchNorms that are not identities, with channels of unlike ranges
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.1, 3.0)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


def _leaf_ranges(model, x):
    """Per concat group, the per-channel peak of every tensor concatenated."""
    traced = torch.fx.symbolic_trace(model)
    modules = dict(model.named_modules())
    peaks = {}
    hooks = []
    groups = _concat_groups(traced.graph)
    for group in groups:
        for node in group:
            if node.op == "call_module":
                hooks.append(modules[node.target].register_forward_hook(
                    lambda _m, _i, out, key=node.target: peaks.__setitem__(key, out.abs().amax((0, 2, 3)))))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return [torch.cat([peaks[n.target] for n in group if n.op == "call_module"]) for group in groups]


def test_concat_equalisation_is_exact_and_gives_each_densenet_block_one_range():
    model = _trained_looking("densenet121", 0.25)
    x = torch.randn(8, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    equalized, groups = equalize_concat_ranges(model, [x])
    assert groups == 4  # one per dense block
    with torch.no_grad():
        expected, got = model(x), equalized(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    for old, new in zip(_leaf_ranges(model, x), _leaf_ranges(equalized, x)):
        widest = old.max()
        assert float(widest / old.min()) > 2.0  # there was something to equalise
        # every channel reaches 3/4 of the group's widest range, unless that needs more than 32x
        torch.testing.assert_close(new, old * (0.75 * widest / old).clamp(1.0, 32.0), rtol=1e-3, atol=0.0)


def test_concats_read_by_convs_are_left_alone():
    """GoogLeNet's concats feed convs, which cannot take a per-channel scale back out exactly."""
    model = _trained_looking("googlenet", 0.25)
    x = torch.randn(2, 3, 64, 64)
    equalized, groups = equalize_concat_ranges(model, [x])
    assert groups == 0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), equalized.state_dict().values()))


@pytest.mark.slow  # `make test-full`: keeps `make test` within its 20 minutes
def test_concat_equalisation_raises_trained_densenets_simulated_int8_sqnr():
    """The trained DenseNet-121 through the PT2E int8 graph the TFLite is converted from, on 1,000 test
    images: the logits come closer to PyTorch's (measured 26.0 -> 30.1 dB on all 10,000)."""
    from edgecnn.formats import tflite

    trained = trained_int8("fashion-mnist-densenet121")
    job, recipe, model = trained.job, trained.recipe, trained.job.model
    images, _ = get_dataset(recipe.dataset).model_inputs("test", recipe.resolution, indices=range(1000), progress=False)
    normalized = trained.normalized(images)
    calibration_batch = trained.normalized(trained.calibration.images).permute(0, 3, 1, 2)
    with torch.no_grad():
        reference = model.model(normalized.permute(0, 3, 1, 2)).numpy()

    def sqnr(backbone):
        graph = tflite.quantize(job, backbone, any_batch=True).graph
        with torch.no_grad():
            logits = torch.cat([graph(normalized[i:i + 100]) for i in range(0, len(normalized), 100)]).numpy()
        return 10 * np.log10((reference ** 2).sum() / ((logits - reference) ** 2).sum())

    equalized, groups = equalize_concat_ranges(model.model, [calibration_batch])
    assert groups == 4
    plain, better = sqnr(model.model), sqnr(equalized)
    assert better > plain + 2.0, (plain, better)
