"""Definitions against torchvision's own figures: keys, shapes, parameters, MACs."""
import io

import pytest
import torch

import edgecnn
from conftest import torchvision_reference, torchvision_reference_names

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`

COMPATIBLE = sorted(n for n in edgecnn.list_models() if edgecnn.get_model_info(n).torchvision_compatible)


def test_every_compatible_model_has_reference_figures_and_every_reference_is_built():
    assert set(COMPATIBLE) == set(torchvision_reference_names())
    assert {"mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", *(f"efficientnet_b{i}" for i in range(8)),
            "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
            "wide_resnet50_2", "densenet121", "googlenet", "inception_v3"} <= set(COMPATIBLE)


@pytest.mark.parametrize("name", COMPATIBLE)
def test_state_dict_keys_and_shapes_equal_torchvision_in_order(name):
    ref = torchvision_reference(name)
    with torch.device("meta"):
        model = edgecnn.create_model(name)
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    theirs = [(e["key"], e["shape"], e["dtype"]) for e in ref["state_dict"]]
    assert ours == theirs


@pytest.mark.parametrize("name", COMPATIBLE)
def test_params_and_macs_equal_torchvision(name):
    ref = torchvision_reference(name)
    with torch.device("meta"):
        model = edgecnn.create_model(name)
    prof = edgecnn.profile(model, ref["input_resolution"])
    assert prof.params == ref["num_params"]
    assert prof.macs == ref["macs"]
    assert list(prof.output_shape) == ref["output_shape_batch1"]
    info = edgecnn.get_model_info(name)
    assert (info.reference.params, info.reference.macs) == (ref["num_params"], ref["macs"])
    assert info.default_resolution == ref["input_resolution"]


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0"])
def test_a_checkpoint_in_torchvision_layout_loads_strictly_and_drives_the_outputs(name):
    """A file saved from torchvision's keys and shapes loads with strict=True and sets every output."""
    ref = torchvision_reference(name)
    generator = torch.Generator().manual_seed(1)
    checkpoint = {}
    for e in ref["state_dict"]:
        dtype = getattr(torch, e["dtype"])
        if dtype.is_floating_point:
            value = torch.rand(e["shape"], generator=generator) * 0.2 + (0.9 if "running_var" in e["key"] else -0.1)
        else:
            value = torch.tensor(7, dtype=dtype)
        checkpoint[e["key"]] = value
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    model = edgecnn.create_model(name)
    model.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint[key]), key
    # the outputs follow the file: not the initialisation's, and its classifier bias shifts every logit
    x = torch.rand(2, 3, 64, 64, generator=generator)
    with torch.no_grad():
        out = model(x)
        fresh = edgecnn.create_model(name)(x)
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        bias = head.bias.clone()
        head.bias.zero_()
        unbiased = model(x)
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    assert not torch.allclose(out, fresh, atol=1e-3)
    assert torch.allclose(out - unbiased, bias.expand_as(out), atol=1e-5)


def test_mobilenet_v2_width_resolution_table():
    table = torchvision_reference("mobilenet_v2_width_table")
    assert len(table) == 25
    for row in table:
        with torch.device("meta"):
            model = edgecnn.create_model("mobilenet_v2", alpha=row["width_mult"])
        prof = edgecnn.profile(model, row["resolution"])
        assert (prof.params, prof.macs) == (row["num_params"], row["macs"]), row
        assert len(model.state_dict()) == row["num_state_dict_tensors"]
